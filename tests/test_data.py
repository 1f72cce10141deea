"""tidu.data: datasets, the loader (batching, shuffling, collate, prefetch, exact resume), splits,
tabular preprocessing saved without pickle, and the built-in datasets."""
import collections
import json
import subprocess
import sys

import numpy as np
import pytest

import tidu as td
from tidu.data import (BatchSampler, ConcatDataset, DataLoader, Dataset, IterableDataset, RandomSampler,
                       SequentialSampler, Subset, SubsetRandomSampler, TabularPreprocessor, TensorDataset,
                       default_collate, load, random_split, read_table, stratified_split)

try:
    import pandas as pd
except ImportError:  # the `data` extra is optional; the loader tests still run
    pd = None
try:
    import sklearn
except ImportError:
    sklearn = None

needs_pandas = pytest.mark.skipif(pd is None or sklearn is None,
                                  reason="pandas/scikit-learn (the `data` extra) are not installed")
needs_sklearn = pytest.mark.skipif(sklearn is None, reason="scikit-learn (the `data` extra) is not installed")


def ids(loader):
    """The label batches of one epoch, as lists (the dataset's labels are the sample indices)."""
    return [yb.tolist() for _, yb in loader]


def indexed(n=10):
    return TensorDataset(np.arange(n, dtype=np.float64).reshape(n, 1), np.arange(n))


# --- datasets ---

def test_tensor_dataset_casts_once_and_indexes():
    ds = TensorDataset(np.ones((4, 3)), np.arange(4, dtype=np.int32), td.tensor([1.0, 2, 3, 4], dtype=td.float64))
    x, y, z = ds[2]
    assert (x.dtype, y.dtype, z.dtype) == (np.float32, np.int64, np.float64)  # Tensors keep the dtype chosen
    assert x.shape == (3,) and y.item() == 2 and len(ds) == 4


def test_tensor_dataset_size_mismatch_names_sizes():
    with pytest.raises(ValueError, match=r"same first dimension.*\[3, 5\]"):
        TensorDataset(np.zeros((3, 2)), np.zeros(5))
    with pytest.raises(TypeError, match="Python objects"):
        TensorDataset(np.array(["a", 1], dtype=object))


def test_subset_and_concat():
    ds = indexed(5)
    sub = Subset(ds, [4, 0])
    assert len(sub) == 2 and sub[0][1].item() == 4
    with pytest.raises(IndexError, match=r"\[-5, 5\)"):
        Subset(ds, [7])
    cat = ds + indexed(3)
    assert isinstance(cat, ConcatDataset) and len(cat) == 8 and cat[6][1].item() == 1 and cat[-1][1].item() == 2
    with pytest.raises(IndexError, match="out of range"):
        cat[8]


# --- samplers ---

def test_samplers():
    assert list(SequentialSampler(range(3))) == [0, 1, 2]
    r = RandomSampler(range(6), generator=np.random.default_rng(1))
    a, b = list(r), list(r)
    assert sorted(a) == sorted(b) == list(range(6)) and a != b
    rep = RandomSampler(range(3), replacement=True, num_samples=10, generator=np.random.default_rng(0))
    assert len(rep) == 10 and set(rep) <= {0, 1, 2}
    assert sorted(SubsetRandomSampler([5, 7, 9], generator=np.random.default_rng(0))) == [5, 7, 9]
    bs = BatchSampler(SequentialSampler(range(7)), 3, drop_last=True)
    assert len(bs) == 2 and [b.tolist() for b in bs] == [[0, 1, 2], [3, 4, 5]]
    assert len(BatchSampler(range(7), 3, drop_last=False)) == 3
    assert [b.tolist() for b in BatchSampler(range(5), 2, False)] == [[0, 1], [2, 3], [4]]  # any iterable sampler
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        BatchSampler(range(3), 0, False)


# --- loader: batching, shuffling, dtypes ---

def test_batches_in_order_and_len():
    loader = DataLoader(indexed(10), batch_size=4)
    assert len(loader) == 3 and ids(loader) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    xb, _ = next(iter(loader))
    assert xb.shape == (4, 1) and xb.dtype == np.float32
    dropped = DataLoader(indexed(10), batch_size=4, drop_last=True)
    assert len(dropped) == 2 and ids(dropped) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(DataLoader(indexed(8), batch_size=4, drop_last=True)) == 2


def test_shuffle_is_reproducible_and_new_each_epoch():
    a = DataLoader(indexed(20), batch_size=6, shuffle=True, seed=3)
    b = DataLoader(indexed(20), batch_size=6, shuffle=True, generator=np.random.default_rng(3))
    e1, e2 = ids(a), ids(a)
    assert e1 == ids(b) and e2 == ids(b)
    assert e1 != e2
    for epoch in (e1, e2):
        assert sorted(sum(epoch, [])) == list(range(20))
    td.manual_seed(7)
    c = ids(DataLoader(indexed(20), batch_size=6, shuffle=True))
    td.manual_seed(7)
    assert ids(DataLoader(indexed(20), batch_size=6, shuffle=True)) == c
    with pytest.raises(ValueError, match="either generator= or seed="):
        DataLoader(indexed(), shuffle=True, seed=1, generator=np.random.default_rng(1))


def test_tensor_dataset_fast_path_takes_whole_batches():
    class NoPerSample(TensorDataset):
        def __getitem__(self, i):
            raise AssertionError("a per-sample fetch on the TensorDataset path")

    ds = NoPerSample(np.arange(12.0).reshape(6, 2), np.arange(6))
    got = [yb.tolist() for _, yb in DataLoader(ds, batch_size=4, shuffle=True, seed=0)]
    assert sorted(sum(got, [])) == list(range(6))
    train, _ = random_split(ds, [4, 2], generator=0)  # a Subset of it too
    xb, yb = next(iter(DataLoader(train, batch_size=4)))
    assert (xb.numpy()[:, 0] == 2 * yb.numpy()).all()


class Records(Dataset):
    """Samples as dicts, like a user's own dataset."""

    def __init__(self, n=5):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": np.full(3, float(i)), "label": i, "w": 0.5, "name": f"s{i}", "pair": (np.int32(i), [1.0, 2.0])}


def test_dict_collate_and_dtypes():
    batch = next(iter(DataLoader(Records(), batch_size=2)))
    assert batch["x"].shape == (2, 3) and batch["x"].dtype == np.float32
    assert batch["label"].dtype == np.int64 and batch["label"].tolist() == [0, 1]
    assert batch["w"].dtype == np.float32 and batch["name"] == ["s0", "s1"]
    count, floats = batch["pair"]
    assert isinstance(batch["pair"], tuple) and count.dtype == np.int64
    assert isinstance(floats, list) and floats[1].tolist() == [2.0, 2.0]
    Point = collections.namedtuple("Point", "x y")
    p = default_collate([Point(1.0, td.tensor([1, 2])), Point(2.0, td.tensor([3, 4]))])
    assert isinstance(p, Point) and p.y.shape == (2, 2)


def test_collate_errors():
    with pytest.raises(ValueError, match=r"different shapes \[\(2,\), \(3,\)\]"):
        default_collate([np.zeros(2), np.zeros(3)])
    with pytest.raises(ValueError, match="different keys"):
        default_collate([{"a": 1}, {"b": 1}])
    with pytest.raises(TypeError, match="don't know how to batch samples of type NoneType"):
        default_collate([None, None])


def test_loader_argument_errors():
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        DataLoader(indexed(), batch_size=0)
    with pytest.raises(ValueError, match="prefetch must be a non-negative integer"):
        DataLoader(indexed(), prefetch=-1)
    with pytest.raises(ValueError, match="sampler is mutually exclusive with shuffle"):
        DataLoader(indexed(), sampler=SequentialSampler(indexed()), shuffle=True)
    with pytest.raises(ValueError, match="batch_sampler is mutually exclusive"):
        DataLoader(indexed(), batch_size=4, batch_sampler=[[0, 1]])


def test_custom_sampler_and_batch_sampler_and_collate_fn():
    loader = DataLoader(indexed(6), batch_sampler=[[5, 0], [1]])
    assert ids(loader) == [[5, 0], [1]] and len(loader) == 2
    loader = DataLoader(indexed(6), batch_size=2, sampler=[3, 2, 1], collate_fn=lambda s: [int(y) for _, y in s])
    assert list(loader) == [[3, 2], [1]]


class Stream(IterableDataset):
    def __init__(self, n, fail_at=None):
        self.n, self.fail_at = n, fail_at

    def __iter__(self):
        for i in range(self.n):
            if i == self.fail_at:
                raise KeyError(f"bad record {i}")
            yield np.float64(i), i


def test_iterable_dataset():
    loader = DataLoader(Stream(7), batch_size=3)
    assert [yb.tolist() for _, yb in loader] == [[0, 1, 2], [3, 4, 5], [6]]
    assert next(iter(loader))[0].dtype == np.float32
    assert [yb.tolist() for _, yb in DataLoader(Stream(7), batch_size=3, drop_last=True)] == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(TypeError, match="no __len__"):
        len(loader)
    with pytest.raises(ValueError, match="map-style dataset"):
        DataLoader(Stream(3), shuffle=True)


# --- prefetch ---

def test_prefetch_gives_the_same_batches():
    plain = DataLoader(indexed(50), batch_size=7, shuffle=True, seed=1)
    ahead = DataLoader(indexed(50), batch_size=7, shuffle=True, seed=1, prefetch=3)
    for _ in range(2):
        assert ids(plain) == ids(ahead)


class Faulty(Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        if i == 6:
            raise ValueError("sample 6 is corrupt")
        return np.float32(i)


def test_prefetch_reraises_worker_exceptions():
    loader = DataLoader(Faulty(), batch_size=2, prefetch=2)
    seen = []
    with pytest.raises(ValueError, match="sample 6 is corrupt"):
        for xb in loader:
            seen.append(xb.tolist())
    assert seen == [[0, 1], [2, 3], [4, 5]]  # the batches before the failure arrived, in order
    with pytest.raises(KeyError, match="bad record 4"):
        list(DataLoader(Stream(9, fail_at=4), batch_size=2, prefetch=1))


def test_prefetch_thread_stops_when_the_loop_breaks():
    import threading
    loader = DataLoader(indexed(100), batch_size=1, prefetch=2)
    it = iter(loader)
    next(it)
    it.close()
    assert not any(t.name == "tidu-DataLoader-prefetch" and t.is_alive() for t in threading.enumerate())


# --- exact resume ---

@pytest.mark.parametrize("prefetch", [0, 2])
def test_resume_mid_epoch_gives_the_remaining_batches(prefetch):
    def make(seed):
        return DataLoader(indexed(23), batch_size=5, shuffle=True, seed=seed, prefetch=prefetch)

    full = make(11)
    uninterrupted = [ids(full) for _ in range(3)]

    run = make(11)
    ids(run)                                  # epoch 0
    it = iter(run)
    head = [next(it)[1].tolist() for _ in range(2)]  # two batches of epoch 1, then "killed"
    state = json.loads(json.dumps(run.state_dict()))
    assert state["epoch"] == 1 and state["batches_seen"] == 2

    resumed = make(999)                       # a fresh process: another seed, restored from the state
    resumed.load_state_dict(state)
    assert head + ids(resumed) == uninterrupted[1]
    assert ids(resumed) == uninterrupted[2]
    assert resumed.epoch == 3


def test_resume_between_epochs_and_unshuffled():
    a = DataLoader(indexed(9), batch_size=4, shuffle=True, seed=5)
    ids(a)
    state = a.state_dict()
    assert state["batches_seen"] == 0 and state["epoch"] == 1
    expected = ids(a)
    b = DataLoader(indexed(9), batch_size=4, shuffle=True, seed=0)
    b.load_state_dict(state)
    assert ids(b) == expected
    seq = DataLoader(indexed(9), batch_size=4)
    it = iter(seq)
    next(it)
    seq2 = DataLoader(indexed(9), batch_size=4)
    seq2.load_state_dict(json.loads(json.dumps(seq.state_dict())))
    assert ids(seq2) == [[4, 5, 6, 7], [8]]
    with pytest.raises(ValueError, match="has no 'rng_state'"):
        seq2.load_state_dict({"epoch": 0, "batches_seen": 0})
    with pytest.raises(ValueError, match="draws no random numbers"):
        seq2.load_state_dict(state)


def test_abandoned_epoch_starts_a_new_order():
    loader = DataLoader(indexed(12), batch_size=3, shuffle=True, seed=2)
    ref = DataLoader(indexed(12), batch_size=3, shuffle=True, seed=2)
    first = next(iter(loader))[1].tolist()
    assert first == ids(ref)[0]
    assert ids(loader) == ids(ref) and loader.epoch == 2


# --- splits ---

def test_random_split():
    ds = indexed(10)
    parts = random_split(ds, [0.5, 0.3, 0.2], generator=np.random.default_rng(0))
    assert [len(p) for p in parts] == [5, 3, 2]
    assert sorted(np.concatenate([p.indices for p in parts]).tolist()) == list(range(10))
    again = random_split(ds, [5, 3, 2], generator=np.random.default_rng(0))
    assert all((p.indices == q.indices).all() for p, q in zip(parts, again))
    assert [len(p) for p in random_split(indexed(11), [1 / 3] * 3, generator=1)] == [4, 4, 3]
    with pytest.raises(ValueError, match=r"sum to 9, but the dataset has 10"):
        random_split(ds, [4, 5])
    with pytest.raises(ValueError, match="must sum to 1"):
        random_split(ds, [0.5, 0.2])


def test_stratified_split_keeps_proportions():
    rng = np.random.default_rng(0)
    labels = rng.choice(["a", "b", "c"], size=503, p=[0.6, 0.3, 0.1])
    train, val, test = stratified_split(labels, fractions=(0.7, 0.2, 0.1), seed=1)
    assert [len(train), len(val), len(test)] == [len(p) for p in random_split(indexed(503), [0.7, 0.2, 0.1])]
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(503))
    for cls in "abc":
        n = (labels == cls).sum()
        for part, f in ((train, 0.7), (val, 0.2), (test, 0.1)):
            assert abs((labels[part] == cls).sum() - n * f) < 1
    again = stratified_split(labels, fractions=(0.7, 0.2, 0.1), seed=1)
    assert all((p == q).all() for p, q in zip((train, val, test), again))
    other = stratified_split(labels, fractions=(0.7, 0.2, 0.1), seed=2)
    assert not (other[0] == train).all()


@needs_sklearn
def test_stratified_split_of_a_dataset_gives_subsets():
    d = load("iris")
    train, test = stratified_split(d.to_dataset(), fractions=(0.8, 0.2), seed=0)
    assert isinstance(train, Subset) and (len(train), len(test)) == (120, 30)
    assert np.bincount(d.y[test.indices]).tolist() == [10, 10, 10]
    with pytest.raises(ValueError, match=r"one-dimensional.*\(3, 2\)"):
        stratified_split(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="must sum to 1"):
        stratified_split([0, 1, 0], fractions=(0.5, 0.6))


# --- tables ---

def frame(n=40, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"age": rng.normal(40, 10, n).round(1), "income": rng.lognormal(10, 1, n),
                       "city": rng.choice(["Beijing", "Shanghai", "Shenzhen"], n), "code": rng.choice([1, 2, 3], n),
                       "label": rng.choice(["no", "yes"], n)})
    df.loc[[1, 5], "age"] = np.nan
    df.loc[[2, 7], "city"] = None
    return df


@needs_pandas
def test_read_table_csv_parquet_tsv(tmp_path):
    df = frame()
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_parquet(tmp_path / "t.parquet")
    df.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    for name in ("t.csv", "t.parquet", "t.tsv"):
        got = read_table(tmp_path / name)
        assert list(got.columns) == list(df.columns) and len(got) == len(df)
    assert read_table(str(tmp_path / "t.csv"), columns=["age"]).shape == (40, 1)
    assert list(read_table(np.zeros((2, 3))).columns) == ["x0", "x1", "x2"]


@needs_pandas
def test_read_table_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file.*missing.csv"):
        read_table(tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match=r"empty.csv' is empty"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="has a header but no rows"):
        read_table(tmp_path / "header.csv")
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(ValueError, match="cannot tell the format.*'.xlsx'"):
        read_table(tmp_path / "t.xlsx")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="cannot read .*bad.parquet' as Parquet"):
        read_table(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"unknown columns 'x', 'y'; the table has columns \['age'"):
        read_table(frame(), columns=["age", "x", "y"])
    with pytest.raises(TypeError, match="expected a path"):
        read_table(42)


@needs_pandas
def test_preprocessor_uses_train_statistics_only():
    train, test = frame(40, seed=0), frame(20, seed=1)
    pre = TabularPreprocessor(numeric=["age", "income"], categorical=["city", "code"], target="label").fit(train)
    X, y = pre.transform(test)
    assert X.dtype == np.float32 and y.dtype == np.int64 and X.shape == (20, 2 + 3 + 3)
    assert pre.feature_names == ["age", "income", "city=Beijing", "city=Shanghai", "city=Shenzhen",
                                 "code=1", "code=2", "code=3"]
    age = train["age"].to_numpy()
    mean, std = np.nanmean(age), np.nanstd(np.where(np.isnan(age), np.nanmean(age), age))
    expected = (test["age"].fillna(mean).to_numpy() - mean) / std
    np.testing.assert_allclose(X[:, 0], expected, rtol=1e-5)
    assert pre.classes == ["no", "yes"] and (pre.inverse_transform_target(y) == test["label"].to_numpy()).all()
    assert X[2, 2:5].sum() == 1  # a missing city is filled with the most frequent one


@needs_pandas
def test_preprocessor_state_round_trip_through_json_is_bit_identical():
    train, test = frame(60, seed=0), frame(25, seed=2)
    test.loc[3, "city"] = "Hangzhou"  # unseen category: all zeros with handle_unknown='ignore'
    for kwargs in (dict(numeric=["age", "income"], categorical=["city", "code"], target="label"),
                   dict(target="income", task="regression", scale_target=True, numeric_impute="median",
                        categorical_impute="constant"),
                   dict(numeric=["age"], target="code")):
        pre = TabularPreprocessor(**kwargs).fit(train)
        text = json.dumps(pre.state_dict())
        again = TabularPreprocessor.from_state_dict(json.loads(text))
        (X1, y1), (X2, y2) = pre.transform(test), again.transform(test)
        assert X1.tobytes() == X2.tobytes() and y1.tobytes() == y2.tobytes() and y1.dtype == y2.dtype
        assert again.feature_names == pre.feature_names
        np.testing.assert_array_equal(pre.inverse_transform_target(y1), again.inverse_transform_target(y2))
    assert X1.shape[1] == 1 and again.classes == [1, 2, 3]  # integer labels stay integers


@needs_pandas
def test_preprocessor_infers_columns_and_inverts_targets():
    train = frame()
    pre = TabularPreprocessor(target="income", task="regression", scale_target=True).fit(train)
    assert pre.numeric == ["age", "code"] and pre.categorical == ["city", "label"]
    X, y = pre.transform(train)
    assert y.dtype == np.float32 and abs(float(y.mean())) < 1e-5
    np.testing.assert_allclose(pre.inverse_transform_target(y), train["income"], rtol=1e-5)
    cls = TabularPreprocessor(target="label").fit(train)
    scores = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert cls.inverse_transform_target(scores).tolist() == ["no", "yes"]
    X, y = cls.transform(train.drop(columns="label"))  # raw rows to predict on: no target
    assert y is None and X.shape[0] == 40


@needs_pandas
def test_preprocessor_errors(tmp_path):
    train = frame()
    pre = TabularPreprocessor(numeric=["age"], categorical=["city"], target="label").fit(train)
    with pytest.raises(ValueError, match=r"unknown column 'agee'; the table has columns \['age', 'income'"):
        TabularPreprocessor(numeric=["agee"], target="label").fit(train)
    with pytest.raises(ValueError, match="unknown column 'city'"):
        pre.transform(train.drop(columns="city"))
    bad = train.copy()
    bad["label"] = bad["label"].astype(object)
    bad.loc[4, "label"] = "maybe"
    with pytest.raises(ValueError, match="label never seen in training: 'maybe'"):
        pre.transform(bad)
    bad = train.copy()
    bad["age"] = bad["age"].astype(object)
    bad.loc[3, "age"] = "forty"
    with pytest.raises(ValueError, match="numeric column 'age' has a non-numeric value 'forty' \\(row 3\\)"):
        pre.transform(bad)
    with pytest.raises(ValueError, match="non-numeric value 'forty'"):
        TabularPreprocessor(numeric=["age"], target="label").fit(bad)
    with pytest.raises(ValueError, match="the table has no rows"):
        pre.transform(train.iloc[:0])
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        TabularPreprocessor(target="label").fit(tmp_path / "empty.csv")
    strict = TabularPreprocessor(numeric=["age"], categorical=["city"], handle_unknown="error").fit(train)
    new = train.copy()
    new.loc[0, "city"] = "Hangzhou"
    with pytest.raises(ValueError, match="column 'city' has a category never seen in training: 'Hangzhou'"):
        strict.transform(new)
    with pytest.raises(RuntimeError, match="call fit"):
        TabularPreprocessor(numeric=["age"]).transform(train)
    with pytest.raises(ValueError, match="task must be"):
        TabularPreprocessor(task="ranking")
    empty_col = train.assign(age=np.nan)
    with pytest.raises(ValueError, match="column 'age' has no values in the training data"):
        TabularPreprocessor(numeric=["age"]).fit(empty_col)
    missing_y = train.copy()
    missing_y.loc[[0, 3], "label"] = None
    with pytest.raises(ValueError, match=r"target column 'label' has 2 missing value\(s\) \(rows \[0, 3\]"):
        TabularPreprocessor(numeric=["age"], target="label").fit(missing_y)
    with pytest.raises(ValueError, match="not a TabularPreprocessor state"):
        TabularPreprocessor.from_state_dict({"means": [1.0]})
    state = pre.state_dict()
    del state["categories"]
    with pytest.raises(ValueError, match="has no 'categories'"):
        TabularPreprocessor.from_state_dict(state)


# --- built-in datasets ---

@needs_pandas
@pytest.mark.parametrize("name, shape, task, n_classes", [
    ("tutorial", (5, 1), "regression", None), ("digits", (1797, 64), "classification", 10),
    ("iris", (150, 4), "classification", 3), ("breast_cancer", (569, 30), "classification", 2),
    ("wine", (178, 13), "classification", 3), ("diabetes", (442, 10), "regression", None)])
def test_builtin_datasets(name, shape, task, n_classes):
    d = load(name)
    assert d.X.shape == shape and d.X.dtype == np.float32 and d.task == task and len(d.y) == shape[0]
    assert len(d.feature_names) == shape[1]
    if task == "classification":
        assert d.y.dtype == np.int64 and len(d.target_names) == n_classes and d.y.max() == n_classes - 1
    else:
        assert d.y.dtype == np.float32
    df = d.as_frame()
    assert df.shape == (shape[0], shape[1] + 1) and list(df.columns[:-1]) == d.feature_names


@needs_sklearn
def test_builtin_tutorial_values_and_unknown_name():
    X, y = load("Tutorial")
    assert X.ravel().tolist() == [1, 2, 3, 4, 5] and y.tolist() == [2, 4, 5, 4, 5]
    assert load("breast-cancer").target_names == ["malignant", "benign"]
    with pytest.raises(ValueError, match="unknown dataset 'cifar'; known: breast_cancer, diabetes, digits"):
        load("cifar")


def test_import_stays_light():
    code = ("import sys, tidu, tidu.data as d; d.DataLoader; "
            "print(sorted(m for m in ('pandas', 'sklearn', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

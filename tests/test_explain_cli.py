"""`tidu explain RUN_DIR --input FILE`: heat maps for images, ranked features for tables (one-hot columns
summed back to their source column), every method, and clear errors."""
import os
import textwrap

import numpy as np
import pytest

pytest.importorskip("pandas")
pytest.importorskip("sklearn")

import pandas as pd  # noqa: E402

from tidu.cli import main  # noqa: E402
from helpers import run_cli as cli  # noqa: E402
from tidu.cli.explain import aggregate, feature_groups, image_shape  # noqa: E402
from tidu.cli.train import Run  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RECIPES = os.path.join(os.path.dirname(HERE), "recipes")
PNG = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def train(tmp, name, text):
    path = tmp / f"{name}.toml"
    path.write_text(textwrap.dedent(text))
    assert main(["train", str(path), "--out", str(tmp / name), "--no-plots"]) == 0
    return tmp / name


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("digits")
    run = train(tmp, "digits", """
        seed = 0
        [data]
        source = "digits"
        batch_size = 64
        [model]
        hidden = [32]
        [optimizer]
        lr = 0.01
        [train]
        epochs = 3
        """)
    from tidu.data import load
    rows = tmp / "digits.csv"
    load("digits").as_frame().iloc[:5].to_csv(rows, index=False)
    return run, rows


@pytest.fixture(scope="module")
def loan_run(tmp_path_factory):
    from importlib.util import module_from_spec, spec_from_file_location
    spec = spec_from_file_location("make_loan_csv", os.path.join(RECIPES, "make_loan_csv.py"))
    gen = module_from_spec(spec)
    spec.loader.exec_module(gen)
    tmp = tmp_path_factory.mktemp("loan")
    df, _ = gen.make(rows=300, seed=2)
    df.to_csv(tmp / "loan.csv", index=False)
    run = train(tmp, "loan", """
        seed = 0
        [data]
        source = "loan.csv"
        target = "approved"
        [preprocess]
        categorical = ["employment", "city"]
        [model]
        hidden = [16]
        [optimizer]
        lr = 0.01
        [train]
        epochs = 3
        """)
    df.iloc[:1].to_csv(tmp / "one.csv", index=False)
    df.iloc[:12].drop(columns=["approved"]).to_csv(tmp / "some.csv", index=False)
    return run, tmp


def read_csv(path):
    return pd.read_csv(path)


def test_inputs_are_recognized_as_images_or_table_columns(digits_run, loan_run):
    digits, loan = Run(digits_run[0]), Run(loan_run[0])
    assert image_shape(digits.preprocessor) == (8, 8)
    assert image_shape(loan.preprocessor) is None
    groups = feature_groups(loan.preprocessor)
    assert [g for g, _ in groups] == ["age", "income", "loan_amount", "employment", "city"]
    names = loan.preprocessor.feature_names
    assert [names[i] for i in groups[3][1]] == [n for n in names if n.startswith("employment=")]
    assert sorted(i for _, idx in groups for i in idx) == list(range(len(names)))  # each input once
    a = np.arange(2 * len(names), dtype=np.float32).reshape(2, -1)
    summed = aggregate(a, groups)
    assert summed.shape == (2, 5) and np.allclose(summed.sum(1), a.sum(1))


def test_image_run_writes_a_heatmap_and_integrated_gradients_are_complete(digits_run, tmp_path, capsys):
    run, rows = digits_run
    rc, out, _ = cli(capsys, "explain", run, "--input", rows, "--out", tmp_path)
    assert rc == 0, out
    assert "explained 5 rows with integrated gradients (score: each row's predicted class)" in out
    assert (tmp_path / "heatmap.png").read_bytes()[:8] == PNG
    table = read_csv(tmp_path / "attributions.csv")
    pixels = [f"pixel_{r}_{c}" for r in range(8) for c in range(8)]
    assert list(table.columns) == ["row", "prediction", "explained_class", "convergence_delta"] + pixels
    assert (table["prediction"] == table["explained_class"]).all()
    # completeness: Σ attributions = f(x) − f(black image) for the explained logit, within 1%
    r = Run(run)
    from tidu.cli.explain import baseline
    X, _ = r.preprocessor.transform(pd.read_csv(rows))
    logits = r.trainer.predict(np.vstack([X, baseline(r)[None]]))
    k = table["explained_class"].to_numpy()
    gap = logits[np.arange(5), k] - logits[5, k]
    total = table[pixels].to_numpy().sum(1)
    assert np.allclose(total, gap, rtol=0.01, atol=0.01 * np.abs(gap).max())
    assert np.allclose(total - gap, table["convergence_delta"], atol=1e-3)


def test_occlusion_of_a_chosen_class_on_images(digits_run, tmp_path, capsys):
    run, rows = digits_run
    rc, out, _ = cli(capsys, "explain", run, "--input", rows, "--method", "occlusion", "--target", "3",
                     "--out", tmp_path)
    assert rc == 0 and "with occlusion (score: class '3')" in out
    table = read_csv(tmp_path / "attributions.csv")
    assert (table["explained_class"] == 3).all() and "convergence_delta" not in table
    assert (tmp_path / "heatmap.png").read_bytes()[:8] == PNG


def test_one_table_row_gets_signed_attributions_per_source_column(loan_run, capsys):
    run, tmp = loan_run
    rc, out, _ = cli(capsys, "explain", run, "--input", tmp / "one.csv")  # default: RUN_DIR/explain
    assert rc == 0, out
    folder = run / "explain"
    assert (folder / "features.png").read_bytes()[:8] == PNG
    table = read_csv(folder / "attributions.csv")
    columns = ["age", "income", "loan_amount", "employment", "city"]
    assert list(table.columns) == ["row", "prediction", "explained_class", "convergence_delta"] + columns
    assert table["prediction"][0] in ("yes", "no") and abs(table["convergence_delta"][0]) < 0.01
    top = out.split("top features: ")[1].splitlines()[0]
    assert top.split(" ")[1][0] in "+-"  # one row: signed


@pytest.mark.parametrize("method", ["ig", "saliency", "ixg", "smoothgrad", "occlusion"])
def test_every_method_on_several_rows(loan_run, tmp_path, capsys, method):
    run, tmp = loan_run
    rc, out, _ = cli(capsys, "explain", run, "--input", tmp / "some.csv", "--method", method, "--target", "no",
                     "--out", tmp_path)
    assert rc == 0, out
    table = read_csv(tmp_path / "attributions.csv")
    assert len(table) == 12 and (table["explained_class"] == "no").all()
    values = table[["age", "income", "loan_amount", "employment", "city"]].to_numpy()
    assert np.isfinite(values).all() and np.abs(values).sum() > 0
    if method in ("saliency", "smoothgrad"):
        assert (values >= 0).all()
    assert (tmp_path / "features.png").read_bytes()[:8] == PNG


def test_explaining_the_other_class_flips_the_sign_of_a_two_class_logit_difference(loan_run, tmp_path, capsys):
    """Attributions of class 'yes' and class 'no' for the same rows: both complete, each about its own logit."""
    run, tmp = loan_run
    for label in ("yes", "no"):
        assert cli(capsys, "explain", run, "--input", tmp / "some.csv", "--target", label,
                   "--out", tmp_path / label)[0] == 0
    yes, no = (read_csv(tmp_path / k / "attributions.csv") for k in ("yes", "no"))
    assert (np.abs(yes["convergence_delta"]) < 0.01).all() and (np.abs(no["convergence_delta"]) < 0.01).all()
    assert not np.allclose(yes["income"], no["income"])


@pytest.mark.parametrize("args, message", [
    (["--method", "lime"], "--method: unknown method 'lime'; choose one of ig, saliency, ixg, smoothgrad, occlusion"),
    (["--target", "maybe"], "--target: unknown class 'maybe'; the classes are \\['no', 'yes'\\]"),
    (["--steps", "1"], "--steps must be an integer of at least 2"),
])
def test_errors_are_one_clear_line(loan_run, capsys, args, message):
    import re
    run, tmp = loan_run
    rc, out, err = cli(capsys, "explain", run, "--input", tmp / "one.csv", *args)
    assert rc == 1 and out == "" and re.search(message, err), err


def test_input_without_the_models_columns_is_refused(loan_run, tmp_path, capsys):
    run, _ = loan_run
    pd.DataFrame({"age": [30]}).to_csv(tmp_path / "bad.csv", index=False)
    rc, _, err = cli(capsys, "explain", run, "--input", tmp_path / "bad.csv")
    assert rc == 1 and "lacks the columns 'income', 'loan_amount'" in err


def test_a_regression_is_explained_in_the_targets_units(tmp_path, capsys):
    run = train(tmp_path, "diabetes", """
        [data]
        source = "diabetes"
        [model]
        hidden = [8]
        [train]
        epochs = 2
        """)
    from tidu.data import load
    load("diabetes").as_frame().iloc[:4].to_csv(tmp_path / "rows.csv", index=False)
    rc, out, _ = cli(capsys, "explain", run, "--input", tmp_path / "rows.csv", "--out", tmp_path / "e")
    assert rc == 0 and "(score: the predicted value)" in out
    table = read_csv(tmp_path / "e" / "attributions.csv")
    r = Run(run)
    from tidu.cli.explain import baseline
    base = r.preprocessor.inverse_transform_target(r.trainer.predict(baseline(r)[None]).reshape(-1))[0]
    gap = table["prediction"] - base  # in the target's units (the model learns a standardized target)
    total = table[[c for c in table.columns if c not in ("row", "prediction", "convergence_delta")]].sum(axis=1)
    assert np.allclose(total, gap, atol=0.01 * np.abs(gap).max())
    rc, _, err = cli(capsys, "explain", run, "--input", tmp_path / "rows.csv", "--target", "1")
    assert rc == 1 and "the run is a regression" in err

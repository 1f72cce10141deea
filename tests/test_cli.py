"""The command line: tidu train / evaluate / predict / plot, run folders, resume, and clear errors."""
import json
import os
import shutil
import textwrap

import numpy as np
import pytest

pytest.importorskip("pandas")
pytest.importorskip("sklearn")

import pandas as pd  # noqa: E402

import tidu as td  # noqa: E402
from tidu.cli import main  # noqa: E402
from helpers import run_cli as cli  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RECIPES = os.path.join(os.path.dirname(HERE), "recipes")
PNG = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


IRIS = """
    seed = 3
    [data]
    source = "iris"
    split = [0.6, 0.2, 0.2]
    batch_size = 16
    [model]
    hidden = [16]
    dropout = 0.2
    [optimizer]
    name = "adamw"
    lr = 0.01
    [schedule]
    name = "cosine"
    [train]
    epochs = 6
    metrics = ["accuracy", "f1_macro"]
    early_stopping = {patience = 50}
    grad_clip = 1.0
    [output]
    plots = false
    """


@pytest.fixture(scope="module")
def loan_csv(tmp_path_factory):
    from importlib.util import module_from_spec, spec_from_file_location
    spec = spec_from_file_location("make_loan_csv", os.path.join(RECIPES, "make_loan_csv.py"))
    gen = module_from_spec(spec)
    spec.loader.exec_module(gen)
    df, _ = gen.make(rows=400, seed=1)
    path = tmp_path_factory.mktemp("loan") / "loan.csv"
    df.to_csv(path, index=False)
    return path


def loan_config(tmp_path, csv, **changes):
    text = f"""
        seed = 0
        [data]
        source = "{csv}"
        target = "approved"
        split = [0.6, 0.2, 0.2]
        [preprocess]
        numeric = ["age", "income", "loan_amount"]
        categorical = ["employment", "city"]
        [model]
        hidden = [16]
        [optimizer]
        lr = 0.01
        [train]
        epochs = 3
        metrics = ["accuracy", {{name = "precision", pos_label = "yes"}}]
        [output]
        plots = false
        """
    for old, new in changes.items():
        assert old in text, old
        text = text.replace(old, new)
    return write(tmp_path / "loan.toml", text)


@pytest.fixture(scope="module")
def loan_run(tmp_path_factory, loan_csv):
    tmp = tmp_path_factory.mktemp("loanrun")
    cfg = loan_config(tmp, loan_csv)
    assert main(["train", str(cfg), "--out", str(tmp / "run")]) == 0
    return tmp / "run"


def weights(path):
    from tidu.train.checkpoint import load_checkpoint
    return {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in load_checkpoint(path)["model"].items()}


def one_error(err, command="train"):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"tidu {command}: error: "), err
    return lines[0]


# --- training a run ---

def test_train_writes_a_complete_run_folder(tmp_path, capsys):
    cfg = write(tmp_path / "iris.toml", IRIS)
    rc, out, err = cli(capsys, "train", cfg, "--out", tmp_path / "run")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("mlp 4→16→3 on iris (classification): 90 train / 30 val / 30 test rows; 6 epochs")
    assert [ln.split(" - ")[0] for ln in lines if ln.startswith("epoch ")] == [f"epoch {i}/6" for i in range(1, 7)]
    assert lines[-2].startswith("test (30 rows): loss: ") and "accuracy: " in lines[-2]
    run = tmp_path / "run"
    names = set(os.listdir(run))
    assert {"config.json", "data.json", "summary.json", "history.json", "metrics.csv", "metrics.jsonl",
            "checkpoints"} <= names and "failed.json" not in names and "plots" not in names
    assert sorted(os.listdir(run / "checkpoints")) == ["best.safetensors", "final.safetensors", "last.safetensors"]
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["hidden"] == [16] and config["optimizer"]["weight_decay"] == 0.01  # defaults filled in
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 6
    assert summary["class_names"] == ["setosa", "versicolor", "virginica"]
    assert np.asarray(summary["test_confusion_matrix"]).sum() == 30
    data = json.loads((run / "data.json").read_text())
    parts = [set(data["splits"][k]) for k in ("train", "val", "test")]
    assert sum(map(len, parts)) == 150 and len(set.union(*parts)) == 150  # disjoint, complete
    # the config copy is itself a valid config
    from tidu import config as tc
    assert tc.validate(config) == config


def test_evaluate_plot_and_predict_on_a_finished_run(tmp_path, capsys):
    cfg = write(tmp_path / "iris.toml", IRIS.replace("plots = false", "plots = true"))
    assert cli(capsys, "train", cfg, "--out", tmp_path / "run", "--epochs", "2")[0] == 0
    run = tmp_path / "run"
    assert (run / "plots" / "test_confusion_matrix.png").read_bytes().startswith(PNG)
    summary = json.loads((run / "summary.json").read_text())

    rc, out, _ = cli(capsys, "evaluate", run, "--json")
    assert rc == 0
    result = json.loads(out)
    assert result["rows"] == 30 and result["metrics"] == pytest.approx(summary["test"])
    assert result["confusion_matrix"] == summary["test_confusion_matrix"]
    rc, out, _ = cli(capsys, "evaluate", run)
    assert out.startswith("the test split (30 rows): loss: ") and "confusion matrix" in out

    for png in (run / "plots").iterdir():
        png.unlink()
    rc, out, _ = cli(capsys, "plot", run)
    assert rc == 0
    drawn = sorted(os.path.basename(p) for p in out.split())
    assert {"loss.png", "accuracy.png", "confusion_matrix.png", "test_confusion_matrix.png"} <= set(drawn)
    assert all((run / "plots" / n).read_bytes().startswith(PNG) for n in drawn)

    rows = td.data.load("iris").as_frame().drop(columns=["target"]).iloc[:7]
    rows.to_csv(tmp_path / "rows.csv", index=False)
    rc, out, _ = cli(capsys, "predict", run, "--input", tmp_path / "rows.csv")  # CSV on standard output
    assert rc == 0 and out.splitlines()[0] == "prediction,prob_setosa,prob_versicolor,prob_virginica"
    assert len(out.splitlines()) == 8


def test_predict_on_raw_rows_equals_trainer_predict_on_preprocessed_rows(loan_run, loan_csv, tmp_path, capsys):
    from tidu.cli.train import Run
    raw = pd.read_csv(loan_csv).iloc[:50]
    assert raw.isna().any().any()  # missing values go through the saved imputation
    raw.drop(columns=["approved"]).to_csv(tmp_path / "rows.csv", index=False)
    rc, out, _ = cli(capsys, "predict", loan_run, "--input", tmp_path / "rows.csv", "--output", tmp_path / "p.csv")
    assert rc == 0 and out.strip() == f"50 predictions written to {tmp_path / 'p.csv'}"
    preds = pd.read_csv(tmp_path / "p.csv")
    assert list(preds.columns) == ["prediction", "prob_no", "prob_yes"]

    run = Run(loan_run)
    X, _ = run.preprocessor.transform(raw)
    logits = run.trainer.predict(X)
    e = np.exp(logits - logits.max(1, keepdims=True))
    proba = (e / e.sum(1, keepdims=True)).astype(np.float32)
    np.testing.assert_array_equal(preds[["prob_no", "prob_yes"]].to_numpy(np.float32), proba)
    assert preds["prediction"].tolist() == np.array(["no", "yes"])[logits.argmax(1)].tolist()

    # the target column, when present, plays no part; a missing feature column is named
    raw.to_csv(tmp_path / "with_target.csv", index=False)
    cli(capsys, "predict", loan_run, "--input", tmp_path / "with_target.csv", "--output", tmp_path / "q.csv")
    assert pd.read_csv(tmp_path / "q.csv").equals(preds)
    raw.drop(columns=["city"]).to_csv(tmp_path / "no_city.csv", index=False)
    rc, _, err = cli(capsys, "predict", loan_run, "--input", tmp_path / "no_city.csv", "--output", tmp_path / "r.csv")
    assert rc == 1 and "lacks the column 'city'" in one_error(err, "predict")
    assert not (tmp_path / "r.csv").exists()


def test_regression_predictions_are_in_the_targets_units(tmp_path, capsys):
    cfg = write(tmp_path / "d.toml", """
        [data]
        source = "diabetes"
        [model]
        type = "linear"
        [optimizer]
        lr = 0.01
        [train]
        epochs = 20
        [output]
        plots = false
        """)
    assert cli(capsys, "train", cfg, "--out", tmp_path / "run")[0] == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert 30 < summary["test"]["mae"] < 80  # in the target's units (it spans 25..346), not standardized ones
    d = td.data.load("diabetes")
    frame = d.as_frame()
    test = json.loads((tmp_path / "run" / "data.json").read_text())["splits"]["test"]
    frame.iloc[test].to_csv(tmp_path / "rows.csv", index=False)
    cli(capsys, "predict", tmp_path / "run", "--input", tmp_path / "rows.csv", "--output", tmp_path / "p.csv")
    pred = pd.read_csv(tmp_path / "p.csv")["prediction"].to_numpy()
    from tidu.train import metrics
    assert metrics.mae(d.y[test], pred) == pytest.approx(summary["test"]["mae"], rel=1e-5)
    assert metrics.r2(d.y[test], pred) == pytest.approx(summary["test"]["r2"], rel=1e-5)


# --- kill and resume ---

def test_kill_and_resume_gives_the_same_weights_bit_for_bit(tmp_path, capsys):
    cfg = write(tmp_path / "iris.toml", IRIS)
    assert cli(capsys, "train", cfg, "--out", tmp_path / "a")[0] == 0
    rc, out, err = cli(capsys, "train", cfg, "--out", tmp_path / "b", "--stop-after-epoch", "3")
    assert rc == 1 and "stopped after epoch 3" in err and f"tidu train --resume {tmp_path / 'b'}" in err
    assert sum(ln.startswith("epoch ") for ln in out.splitlines()) == 3
    assert not (tmp_path / "b" / "summary.json").exists()  # a stopped run is not a finished one
    rc, _, err = cli(capsys, "evaluate", tmp_path / "b")
    assert rc == 1 and "did not finish" in one_error(err, "evaluate")

    rc, out, err = cli(capsys, "train", "--resume", tmp_path / "b")
    assert rc == 0, err
    assert out.splitlines()[0] == f"resuming {tmp_path / 'b'} after epoch 3 of 6"
    assert [ln.split(" - ")[0] for ln in out.splitlines() if ln.startswith("epoch ")] == \
        ["epoch 4/6", "epoch 5/6", "epoch 6/6"]
    for name in ("final", "last", "best"):
        a, b = weights(tmp_path / "a" / "checkpoints" / f"{name}.safetensors"), \
            weights(tmp_path / "b" / "checkpoints" / f"{name}.safetensors")
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name}: {k}")
    sa, sb = (json.loads((tmp_path / r / "summary.json").read_text()) for r in "ab")
    assert sa["test"] == sb["test"] and sa["history"] == sb["history"]
    # the logs of both runs agree too (apart from the time they took)
    ha, hb = (json.loads((tmp_path / r / "history.json").read_text()) for r in "ab")
    assert ha == hb

    rc, _, err = cli(capsys, "train", "--resume", tmp_path / "b")
    assert rc == 1 and "has finished" in one_error(err)


def test_truncated_checkpoint_is_refused_clearly(tmp_path, capsys):
    cfg = write(tmp_path / "iris.toml", IRIS)
    cli(capsys, "train", cfg, "--out", tmp_path / "b", "--stop-after-epoch", "2")
    last = tmp_path / "b" / "checkpoints" / "last.safetensors"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    rc, _, err = cli(capsys, "train", "--resume", tmp_path / "b")
    assert rc == 1 and "last.safetensors" in one_error(err) and "truncated" in err.lower()

    assert cli(capsys, "train", cfg, "--out", tmp_path / "c", "--epochs", "1")[0] == 0
    final = tmp_path / "c" / "checkpoints" / "final.safetensors"
    final.write_bytes(final.read_bytes()[:100])
    rc, _, err = cli(capsys, "evaluate", tmp_path / "c")
    assert rc == 1 and "final.safetensors" in one_error(err, "evaluate")


def test_resume_argument_errors(tmp_path, capsys):
    rc, _, err = cli(capsys, "train", "--resume", tmp_path / "nowhere")
    assert rc == 1 and "no run folder" in one_error(err)
    rc, _, err = cli(capsys, "train", "x.toml", "--resume", tmp_path)
    assert rc == 1 and "not both" in one_error(err)
    rc, _, err = cli(capsys, "train", "--resume", tmp_path, "--epochs", "3")
    assert rc == 1 and "--epochs does not go with --resume" in one_error(err)
    rc, _, err = cli(capsys, "train")
    assert rc == 1 and "give a config file" in one_error(err)


# --- the run folder is never clobbered ---

def test_existing_run_folder_is_refused_unless_force(tmp_path, capsys):
    cfg = write(tmp_path / "iris.toml", IRIS)
    run = tmp_path / "run"
    assert cli(capsys, "train", cfg, "--out", run, "--epochs", "1")[0] == 0
    before = (run / "checkpoints" / "final.safetensors").read_bytes()
    rc, _, err = cli(capsys, "train", cfg, "--out", run, "--epochs", "2")
    assert rc == 1 and "already holds a finished run" in one_error(err) and "--force" in err
    assert (run / "checkpoints" / "final.safetensors").read_bytes() == before
    # a bad config with --force destroys nothing either: errors come before the folder is touched
    bad = write(tmp_path / "bad.toml", IRIS.replace("lr = 0.01", "lr = -1"))
    rc, _, err = cli(capsys, "train", bad, "--out", run, "--force")
    assert rc == 1 and (run / "checkpoints" / "final.safetensors").read_bytes() == before
    assert cli(capsys, "train", cfg, "--out", run, "--epochs", "2", "--force")[0] == 0
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    rc, _, err = cli(capsys, "train", cfg, "--out", mine, "--force")
    assert rc == 1 and "will not delete" in one_error(err) and "notes.txt" in err
    assert (mine / "notes.txt").read_text() == "keep me"


def test_nan_run_leaves_a_failed_folder_not_a_valid_one(tmp_path, capsys):
    cfg = write(tmp_path / "nan.toml", IRIS.replace('name = "adamw"\n    lr = 0.01', 'name = "sgd"\n    lr = 1e30')
                .replace("grad_clip = 1.0", ""))
    rc, _, err = cli(capsys, "train", cfg, "--out", tmp_path / "run")
    assert rc == 1 and "the loss is" in one_error(err) and "step" in err
    run = tmp_path / "run"
    assert not (run / "summary.json").exists()
    assert "NonFiniteLossError" in json.loads((run / "failed.json").read_text())["error"]
    rc, _, err = cli(capsys, "predict", run, "--input", cfg)
    assert rc == 1 and "failed" in one_error(err, "predict") and "no model" in err


# --- one clear error for each bad config and bad data ---

BAD_CONFIGS = [
    (("[model]", "[model]\n    widht = 3"), "unknown field model.widht"),
    (("batch_size = 16", "batch_size = \"16\""), "data.batch_size: expected an integer >= 1, got '16' (a string)"),
    (('name = "adamw"', 'name = "adamm"'), "optimizer.name: unknown value 'adamm' (did you mean 'adam'?)"),
    (('source = "iris"', 'source = "flowers.csv"\n    target = "y"'), "data.source: no such file"),
    (("dropout = 0.2", "dropout = 1.5"), "model.dropout: expected a number >= 0 and < 1, got 1.5"),
    (('name = "cosine"', 'name = "step"'), "schedule.step_size: missing; the 'step' schedule needs it"),
    (('metrics = ["accuracy", "f1_macro"]', 'metrics = ["accuracy", "r2"]'),
     "train.metrics[1]: 'r2' is a regression metric, but data.task is 'classification'"),
    (('metrics = ["accuracy", "f1_macro"]', 'metrics = ["precision"]'),
     "train.metrics[0]: 'precision' is for two classes, but there are 3; use 'precision_macro'"),
    (("lr = 0.01", "lr = 0.01\n    momentum = 0.9"), "optimizer.momentum: is not an option of 'adamw'"),
    (("seed = 3", "seed = 3\n    seeds = 4"), "unknown field seeds (did you mean 'seed'?)"),
    (("[train]", "[train]\n    loss = \"mse\""), "train.loss: 'mse' does not fit data.task = 'classification'"),
    (("seed = 3", "seed = 3 3"), "not valid TOML"),
]


@pytest.mark.parametrize("change,message", BAD_CONFIGS, ids=[m.split(":")[0][:30] for _, m in BAD_CONFIGS])
def test_bad_config_gives_one_clear_error_and_no_output(tmp_path, capsys, change, message):
    assert change[0] in IRIS
    cfg = write(tmp_path / "bad.toml", IRIS.replace(*change))
    rc, out, err = cli(capsys, "train", cfg, "--out", tmp_path / "run")
    assert rc == 1
    line = one_error(err)
    assert message in line and str(cfg) in line or message in line
    assert not (tmp_path / "run").exists() and out == ""


def _bad_data(tmp_path, loan_csv, kind):
    df = pd.read_csv(loan_csv)
    path = tmp_path / "data.csv"
    changes = {}
    if kind == "unknown target":
        changes['target = "approved"'] = 'target = "approval"'
    elif kind == "unknown feature":
        changes['numeric = ["age", "income", "loan_amount"]'] = 'numeric = ["age", "incme", "loan_amount"]'
    elif kind == "wrong type":
        df["income"] = df["income"].astype(object)
        df.loc[7, "income"] = "lots"
    elif kind == "empty file":
        df = None
        path.write_text("")
    elif kind == "header only":
        df = df.iloc[:0]
    elif kind == "missing labels":
        df.loc[[3, 9], "approved"] = np.nan
    elif kind == "one class":
        df["approved"] = "yes"
    if df is not None:
        df.to_csv(path, index=False)
    return loan_config(tmp_path, path, **changes)


BAD_DATA = [("unknown target", "data.target: unknown column 'approval'; the table has columns"),
            ("unknown feature", "preprocess.numeric: unknown column 'incme'"),
            ("wrong type", "preprocess.numeric: column 'income' has a non-numeric value 'lots' in row 7"),
            ("empty file", "is empty (no header, no rows)"),
            ("header only", "has a header but no rows"),
            ("missing labels", "data.target: the column 'approved' has 2 missing value(s)"),
            ("one class", "only one class")]


@pytest.mark.parametrize("kind,message", BAD_DATA, ids=[k for k, _ in BAD_DATA])
def test_bad_data_gives_one_clear_error_and_no_output(tmp_path, capsys, loan_csv, kind, message):
    cfg = _bad_data(tmp_path, loan_csv, kind)
    rc, out, err = cli(capsys, "train", cfg, "--out", tmp_path / "run")
    assert rc == 1
    assert message in one_error(err)
    assert not (tmp_path / "run").exists()


def test_evaluate_on_a_labelled_file_and_its_errors(loan_run, loan_csv, tmp_path, capsys):
    df = pd.read_csv(loan_csv)
    df.iloc[:100].to_csv(tmp_path / "new.csv", index=False)
    rc, out, _ = cli(capsys, "evaluate", loan_run, "--data", tmp_path / "new.csv", "--json")
    assert rc == 0 and json.loads(out)["rows"] == 100

    unseen = df.iloc[:20].copy()
    unseen.loc[5, "approved"] = "maybe"
    unseen.to_csv(tmp_path / "unseen.csv", index=False)
    rc, _, err = cli(capsys, "evaluate", loan_run, "--data", tmp_path / "unseen.csv")
    assert rc == 1 and "a label never seen in training: 'maybe'" in one_error(err, "evaluate")

    df.drop(columns=["approved"]).to_csv(tmp_path / "unlabelled.csv", index=False)
    rc, _, err = cli(capsys, "evaluate", loan_run, "--data", tmp_path / "unlabelled.csv")
    assert rc == 1 and "has no target column 'approved'" in one_error(err, "evaluate")

    (tmp_path / "empty.csv").write_text("")
    rc, _, err = cli(capsys, "predict", loan_run, "--input", tmp_path / "empty.csv")
    assert rc == 1 and "is empty" in one_error(err, "predict")

    rc, _, err = cli(capsys, "evaluate", tmp_path)
    assert rc == 1 and "not a tidu run folder" in one_error(err, "evaluate")


def test_changed_data_is_refused_on_resume(tmp_path, capsys, loan_csv):
    csv = tmp_path / "loan.csv"
    csv.write_bytes(loan_csv.read_bytes())
    cfg = loan_config(tmp_path, csv)
    cli(capsys, "train", cfg, "--out", tmp_path / "run", "--stop-after-epoch", "1")
    with open(csv, "a") as f:
        f.write("40,50000,1000,salaried,Wuhan,yes\n")
    rc, _, err = cli(capsys, "train", "--resume", tmp_path / "run")
    assert rc == 1 and "has changed since the run began" in one_error(err)


def test_resume_bit_for_bit_with_batch_schedule_accumulation_and_batch_norm(tmp_path, capsys, loan_csv):
    cfg = loan_config(tmp_path, loan_csv, **{
        "hidden = [16]": "hidden = [16, 8]\n        batch_norm = true\n        dropout = 0.1",
        "[train]": "[schedule]\n        name = \"warmup_cosine\"\n        warmup_epochs = 1\n        [train]\n"
                   "        accumulate_steps = 3",
        "epochs = 3": "epochs = 4"})
    assert cli(capsys, "train", cfg, "--out", tmp_path / "a")[0] == 0
    assert cli(capsys, "train", cfg, "--out", tmp_path / "b", "--stop-after-epoch", "2")[0] == 1
    assert cli(capsys, "train", "--resume", tmp_path / "b")[0] == 0
    a, b = (weights(tmp_path / r / "checkpoints" / "final.safetensors") for r in "ab")
    assert "1.running_mean" in a  # batch norm's buffers travel too
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_resume_after_early_stopping_trains_no_further(tmp_path, capsys):
    text = IRIS.replace("patience = 50", 'patience = 1, monitor = "val_accuracy"').replace("epochs = 6", "epochs = 40")
    cfg = write(tmp_path / "iris.toml", text)
    assert cli(capsys, "train", cfg, "--out", tmp_path / "a")[0] == 0
    sa = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert sa["epochs"] < 40 and sa["stopped_early_after_epoch"] == sa["epochs"]
    # killed after the last checkpoint but before the end: the resumed run only finishes
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    for name in ("summary.json", "checkpoints/final.safetensors"):
        os.remove(tmp_path / "b" / name)
    rc, out, _ = cli(capsys, "train", "--resume", tmp_path / "b")
    assert rc == 0 and not any(ln.startswith("epoch ") for ln in out.splitlines())
    sb = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert sb["epochs"] == sa["epochs"] and sb["test"] == sa["test"]


def test_a_run_without_validation_or_test_split(tmp_path, capsys):
    cfg = write(tmp_path / "t.toml", """
        [data]
        source = "tutorial"
        split = [1.0, 0.0, 0.0]
        batch_size = 5
        [model]
        type = "linear"
        [optimizer]
        name = "sgd"
        lr = 0.01
        weight_decay = 0.0
        [train]
        epochs = 20
        early_stopping = {patience = 10}
        [output]
        plots = false
        """)
    rc, out, err = cli(capsys, "train", cfg, "--out", tmp_path / "run")
    assert rc == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "test" not in summary and summary["sizes"] == {"train": 5, "val": 0, "test": 0}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["early_stopping"]["monitor"] == "loss"
    rc, _, err = cli(capsys, "evaluate", tmp_path / "run")
    assert rc == 1 and "no test split" in one_error(err, "evaluate")

"""``tidu evaluate RUN_DIR``: the finished model's metrics on the run's test split, or on a labelled file.

    tidu evaluate runs/digits                      # the held-out test split the run set aside
    tidu evaluate runs/loan --data new_loans.csv   # any table with the feature columns and the target
    tidu evaluate runs/digits --json               # the numbers as JSON

The rows go through exactly the preprocessing saved with the model. Regression metrics are in the
target's own units; the loss is the one the model was trained on.
"""
import argparse
import json
import os

import numpy as np


def register(sub):
    p = sub.add_parser("evaluate", help="metrics of a finished run on its test split or on a labelled file",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by tidu train")
    p.add_argument("--data", metavar="FILE", help="a labelled CSV / Parquet file instead of the test split")
    p.add_argument("--json", action="store_true", help="print the metrics (and confusion matrix) as JSON")
    p.set_defaults(func=run)


def evaluate(run_dir, data=None):
    """``(metrics, confusion_matrix or None, rows, what)`` of a finished run."""
    from .train import Run
    run = Run(run_dir)
    if data is not None:
        what = repr(str(data))
        _, (X, y) = run.features(data, what)
        if y is None:
            raise ValueError(f"{what} has no target column {run.meta['target']!r}; evaluate needs labelled rows "
                             "(tidu predict reads unlabelled ones)")
    else:
        X, y, what = _test_split(run)
    metrics = run.trainer.evaluate((X, y))
    cm = run.trainer.confusion_matrix if run.task == "classification" else None
    return run, metrics, cm, len(y), what


def _test_split(run):
    from .. import config as _config
    from ..io import read_json
    data = read_json(os.path.join(run.run_dir, "data.json"))
    rows = np.asarray(data["splits"]["test"], dtype=np.int64)
    if not len(rows):
        raise ValueError(f"the run in {run.run_dir!r} has no test split (data.split[2] = 0); give --data FILE")
    source = run.cfg["data"]["source"]
    if source not in _config.BUILTIN_SOURCES and not os.path.exists(source):
        raise FileNotFoundError(f"the run's data {source!r} is gone, so its test split cannot be read; "
                                "give --data FILE")
    frame, _, fingerprint = _config.read_source(run.cfg)
    if fingerprint != data["fingerprint"]:
        raise ValueError(f"{run.cfg['data']['source']!r} has changed since the run (its SHA-256 differs), so its "
                         "test split is lost; give --data FILE")
    X, y = run.preprocessor.transform(frame.iloc[rows])
    return X, y, "the test split"


def run(args):
    from ..train.progress import format_logs
    run_, metrics, cm, n, what = evaluate(args.run_dir, args.data)
    names = run_.meta["class_names"]
    if args.json:
        out = {"rows": n, "metrics": metrics}
        if cm is not None:
            out["confusion_matrix"] = cm.tolist()
            out["class_names"] = names
        print(json.dumps(out, indent=2))
        return 0
    print(f"{what} ({n} rows): {format_logs(metrics)}")
    if cm is not None:
        print(format_confusion(cm, names))
    return 0


def format_confusion(cm, names):
    """The confusion matrix as text: a row per true class, a column per predicted class."""
    names = [str(n) for n in names]
    width = max(max(len(n) for n in names), len(str(int(np.max(cm)))), 4)
    lines = ["confusion matrix (rows: true, columns: predicted)",
             " " * (width + 2) + " ".join(n[:width].rjust(width) for n in names)]
    for name, row in zip(names, cm):
        lines.append(name[:width].rjust(width) + "  " + " ".join(str(int(v)).rjust(width) for v in row))
    return "\n".join(lines)

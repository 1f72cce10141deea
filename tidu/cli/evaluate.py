"""``tidu evaluate RUN_DIR``: the finished model's metrics on the run's test split, or on a labelled file.

    tidu evaluate runs/digits                      # the held-out test split the run set aside
    tidu evaluate runs/loan --data new_loans.csv   # any table with the feature columns and the target
    tidu evaluate runs/digits --json               # the numbers as JSON
    tidu evaluate runs/loan --sensitive city       # and per-group fairness metrics for the groups of 'city'

The rows go through exactly the preprocessing saved with the model. Regression metrics are in the
target's own units; the loss is the one the model was trained on.

With ``--sensitive COLUMN`` (or ``[fairness] sensitive`` in the run's config) a classifier's rows are
also grouped by that column (a numeric one with many values into quartiles): per group the accuracy,
TPR, FPR and selection rate for the positive class (``--pos-label``, by default the second class),
and the demographic-parity and equalized-odds differences (the largest gaps between groups).
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
    p.add_argument("--sensitive", metavar="COLUMN", help="fairness: metrics per group of this column "
                                                        "(default: fairness.sensitive of the run's config)")
    p.add_argument("--pos-label", metavar="CLASS", help="the positive class of the fairness rates "
                                                       "(default: fairness.pos_label, else the second class)")
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
    X, y = run.preprocessor.transform(_test_rows(run))
    return X, y, "the test split"


def _test_rows(run):
    """The raw rows of the run's test split."""
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
    return frame.iloc[rows]


def fairness(run, data=None, sensitive=None, pos_label=None):
    """Group fairness metrics (``tidu.report.run_fairness``) on the test split or a labelled file, for
    ``sensitive`` (default: the config's ``fairness.sensitive``); None when no column is named."""
    from ..data import read_table
    from ..report import run_fairness
    configured = run.cfg.get("fairness") or {}
    if sensitive is None:
        sensitive = configured.get("sensitive")
        pos_label = configured.get("pos_label") if pos_label is None else pos_label
    if sensitive is None:
        return None
    frame = read_table(data) if data is not None else _test_rows(run)
    return run_fairness(run, frame, sensitive, pos_label)


def run(args):
    from ..train.progress import format_logs
    run_, metrics, cm, n, what = evaluate(args.run_dir, args.data)
    groups = fairness(run_, args.data, args.sensitive, args.pos_label)
    names = run_.meta["class_names"]
    if args.json:
        from ..report import fairness_json
        out = {"rows": n, "metrics": metrics}
        if cm is not None:
            out["confusion_matrix"] = cm.tolist()
            out["class_names"] = names
        if groups is not None:
            out["fairness"] = fairness_json(groups)
        print(json.dumps(out, indent=2))
        return 0
    print(f"{what} ({n} rows): {format_logs(metrics)}")
    if cm is not None:
        print(format_confusion(cm, names))
    if groups is not None:
        from ..report import fairness_text
        print(fairness_text(groups))
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

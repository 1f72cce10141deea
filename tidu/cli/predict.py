"""``tidu predict RUN_DIR --input rows.csv``: predictions of a finished run's model on raw rows.

    tidu predict runs/loan --input applicants.csv --output decisions.csv
    tidu predict runs/diabetes --input patients.csv          # CSV on standard output

The rows (CSV or Parquet, with the columns the model was trained on; others, including the target,
are ignored) go through exactly the preprocessing saved with the model — the same fill values, means,
scales and categories. One output row per input row, in order:

    classifiers: prediction (the class label), then prob_<class> for each class
    regression:  prediction (in the target's own units)
"""
import argparse
import sys

import numpy as np


def register(sub):
    p = sub.add_parser("predict", help="predictions of a finished run on raw rows, as CSV",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by tidu train")
    p.add_argument("--input", required=True, metavar="FILE", help="the rows: a CSV or Parquet file")
    p.add_argument("--output", metavar="FILE.csv", help="where to write the predictions (default: standard output)")
    p.set_defaults(func=run)


def predict(run_dir, rows):
    """A pandas DataFrame of predictions (the columns above) for ``rows`` (a path or a DataFrame)."""
    import pandas as pd
    from .train import Run
    run = Run(run_dir)
    what = repr(str(rows)) if not hasattr(rows, "columns") else "the rows"
    df, _ = run.features(rows, what)   # checks the columns first
    df = df.drop(columns=[run.meta["target"]], errors="ignore")  # labels play no part in predicting
    X, _ = run.preprocessor.transform(df)
    if run.task == "regression":
        values = run.preprocessor.inverse_transform_target(run.trainer.predict(X).reshape(-1))
        return pd.DataFrame({"prediction": values})
    proba = run.trainer.predict_proba(X)
    if proba.ndim == 1 or proba.shape[-1] == 1:  # one sigmoid output: the probability of the second class
        p1 = proba.reshape(-1)
        proba = np.stack([1 - p1, p1], axis=1)
    names = run.meta["class_names"]
    out = pd.DataFrame({"prediction": np.asarray(names, dtype=object)[proba.argmax(1)]})
    for i, name in enumerate(names):
        out[f"prob_{name}"] = proba[:, i]
    return out


def run(args):
    out = predict(args.run_dir, args.input)
    if args.output is None:
        out.to_csv(sys.stdout, index=False, float_format="%.9g")
        return 0
    from ..io import atomic_write
    with atomic_write(args.output, "w") as f:
        out.to_csv(f, index=False, float_format="%.9g")
    print(f"{len(out)} predictions written to {args.output}")
    return 0

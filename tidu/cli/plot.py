"""``tidu plot RUN_DIR``: redraw a run's pictures into RUN_DIR/plots/ from its logged history.

One PNG per logged value (training and validation curves: loss.png, accuracy.png, lr.png, ...), the
validation confusion matrix of a classifier, and, for a finished run, the test split's. Works on a run
that is still going or was stopped too. Needs matplotlib (pip install 'tidu[plot]').
"""
import argparse
import os


def register(sub):
    p = sub.add_parser("plot", help="redraw a run's training curves and confusion matrices as PNG",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by tidu train")
    p.set_defaults(func=run)


def run(args):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RuntimeError("tidu plot needs matplotlib: pip install 'tidu[plot]'") from None
    from ..io import read_json
    from ..train.plots import redraw
    from .train import draw_test_confusion
    if not os.path.isdir(args.run_dir):
        raise FileNotFoundError(f"no run folder {args.run_dir!r}")
    paths = redraw(args.run_dir)
    summary_path = os.path.join(args.run_dir, "summary.json")
    if os.path.exists(summary_path):
        summary = read_json(summary_path)
        if summary.get("test_confusion_matrix") is not None:
            paths.append(draw_test_confusion(args.run_dir, summary))
    for path in paths:
        print(path)
    return 0

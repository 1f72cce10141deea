"""``tidu report RUN_DIR``: a model report of a finished run, as one self-contained HTML page and Markdown.

    tidu report runs/loan                           # -> runs/loan/report/report.html and report.md
    tidu report runs/loan --sensitive city          # with the fairness table for the groups of 'city'
    tidu report runs/digits --out /tmp/digits-report

Sections: the data (rows per split, features, class balance), the test metrics and confusion matrix,
the training curves, the privacy budget (runs trained with [privacy]), the top attributions
(integrated gradients on a sample of test rows, per source column) and the fairness table (with
--sensitive COLUMN, or [fairness] sensitive = "column" in the config). The HTML page embeds its
pictures and loads nothing from elsewhere; report.md links to the PNG files.
"""
import argparse


def register(sub):
    p = sub.add_parser("report", help="an HTML (and Markdown) report of a finished run: data, metrics, curves, "
                                      "privacy, attributions, fairness",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by tidu train")
    p.add_argument("--sensitive", metavar="COLUMN", help="the sensitive column for the fairness table "
                                                        "(default: fairness.sensitive of the config)")
    p.add_argument("--pos-label", metavar="CLASS", help="the positive class of the fairness rates "
                                                       "(default: fairness.pos_label, else the second class)")
    p.add_argument("--out", metavar="DIR", help="where to write report.html and report.md (default: RUN_DIR/report)")
    p.add_argument("--sample", type=int, default=200, metavar="N",
                   help="test rows to compute attributions on (default: 200)")
    p.set_defaults(func=run)


def run(args):
    from ..report import build
    if args.sample < 1:
        raise ValueError(f"--sample must be at least 1, got {args.sample}")
    for path in build(args.run_dir, sensitive=args.sensitive, out=args.out, pos_label=args.pos_label,
                      sample=args.sample):
        print(path)
    return 0

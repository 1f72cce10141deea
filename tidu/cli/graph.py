"""``tidu graph RUN_DIR``: the architecture of a finished run's model as a Mermaid flowchart.

    tidu graph runs/digits                    # print the flowchart (paste it into any Mermaid viewer)
    tidu graph runs/digits --out model.mmd    # write it to a file
    tidu graph runs/digits --summary          # and print the table of layers, shapes and parameters

The diagram is traced from one forward pass on an example row, so the edges follow the data: one
node per layer with its key sizes (``Linear 64→256``), containers as subgraphs — the format of the
tutorial's figures.
"""
import argparse


def register(sub):
    p = sub.add_parser("graph", help="a finished run's architecture as a Mermaid flowchart",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by tidu train")
    p.add_argument("--out", metavar="FILE.mmd", help="write the flowchart here instead of printing it")
    p.add_argument("--direction", default="TD", choices=("TD", "LR"), help="top-down (default) or left-right")
    p.add_argument("--summary", action="store_true", help="also print the layer table (shapes, parameters, memory)")
    p.set_defaults(func=run)


def example_input(run):
    """One row of zeros with the run's number of (preprocessed) features: what the model takes."""
    import tidu as td
    return td.zeros(1, int(run.meta["n_features"]))


def run(args):
    from ..io import atomic_write
    from ..nn.summary import summary, to_mermaid
    from .train import Run
    run_ = Run(args.run_dir)
    x = example_input(run_)
    text = to_mermaid(run_.model, x, direction=args.direction)
    if args.summary:
        summary(run_.model, x)
    if args.out:
        with atomic_write(args.out, "w") as f:
            f.write(text + "\n")
        print(f"Mermaid flowchart of {type(run_.model).__name__} written to {args.out}")
    else:
        print(text)
    return 0

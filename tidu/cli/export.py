"""``tidu export RUN_DIR --onnx``: a finished run's model as an ONNX file, for runtimes beyond Python.

    tidu export runs/digits --onnx                    # -> runs/digits/model.onnx
    tidu export runs/digits --onnx --out digits.onnx --opset 18

The file takes the model's input — the *preprocessed* features, (batch, n_features) float32, any batch
size — under the name ``input`` and returns ``output``: the logits of a classifier (one per class, in
the order of ``class_names`` in the run's config), or the standardized prediction of a regression.
The preprocessing (scaling, one-hot columns) stays in the run folder; ``tidu predict`` applies it.
When onnxruntime is installed the file is run once on a few rows and compared with tidu's output.
"""
import argparse
import os

import numpy as np


def register(sub):
    p = sub.add_parser("export", help="write a finished run's model as an ONNX file",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by tidu train")
    p.add_argument("--onnx", action="store_true", help="export to ONNX (needs: pip install onnx)")
    p.add_argument("--out", metavar="FILE", help="where to write the file (default: RUN_DIR/model.onnx)")
    p.add_argument("--opset", type=int, default=17, help="the ONNX operator set (default: 17)")
    p.set_defaults(func=run)


def verify(model, path, n_features, rows=4, seed=0):
    """Largest |onnxruntime - tidu| on ``rows`` random rows, or None without onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    import tidu as td
    from ..autograd import no_grad
    x = np.random.default_rng(seed).standard_normal((rows, n_features)).astype(np.float32)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    theirs = session.run(None, {"input": x})[0]
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            ours = model(td.tensor(x)).numpy()
    finally:
        model.train(was_training)
    return float(np.max(np.abs(theirs - ours)))


def run(args):
    if not args.onnx:
        raise ValueError("choose the format: tidu export RUN_DIR --onnx")
    from ..io.onnx import export_onnx
    from .graph import example_input
    from .train import Run
    run_ = Run(args.run_dir)
    out = args.out or os.path.join(args.run_dir, "model.onnx")
    n = int(run_.meta["n_features"])
    export_onnx(run_.model, example_input(run_), out, opset=args.opset)
    if run_.task == "classification":
        what = "logits of " + ", ".join(map(str, run_.meta["class_names"]))
    else:
        what = "the prediction" + (", standardized" if run_.preprocessor.target_scaler_ is not None else "")
    print(f"ONNX model written to {out} (opset {args.opset}): input 'input' (batch, {n}) float32 of preprocessed "
          f"features -> output 'output' ({what})")
    gap = verify(run_.model, out, n)
    if gap is not None:
        print(f"onnxruntime check: largest difference from tidu {gap:.2e} on 4 random rows")
    return 0

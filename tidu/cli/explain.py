"""``tidu explain RUN_DIR --input FILE``: which features drove a finished run's predictions.

    tidu explain runs/loan --input applicants.csv                  # -> runs/loan/explain/
    tidu explain runs/digits --input digits.csv --method occlusion --target 3 --out why/

The rows (CSV or Parquet, with the columns the model was trained on) go through the preprocessing
saved with the model; attributions are computed on the model's inputs (standardized numbers, one-hot
categories) and summed back to each source column, so a categorical column gets one score.

    --method ig          integrated gradients (default; Gauss-Legendre, 64 steps): attributions add up
                         to f(row) - f(baseline); the largest gap is printed as the convergence delta
    --method saliency    |gradient| of the score
    --method ixg         input x gradient
    --method smoothgrad  |gradient| averaged over 25 noisy copies of each row
    --method occlusion   the drop of the score when a feature (a 2x2 patch of an image) is set to the baseline

The score explained is the logit of ``--target`` (a class label or name; default: each row's predicted
class), or the predicted value of a regression (attributions in the target's units). The baseline is
the training mean for a table (every standardized number at 0, no category), a black image for images.

Written into ``--out`` (default RUN_DIR/explain/):

    attributions.csv   one row per input row: the prediction, the class explained, one column per feature
    features.png       a table's features ranked by attribution: signed for one row, the mean |attribution|
                       over several rows
    heatmap.png        images (features named <name>_<row>_<col>, e.g. digits' pixel_3_5): each row's image
                       beside its attribution map (red: towards the class, blue: against), up to 16 rows

``tidu train`` builds table (and image-as-table) models only, so there are no text runs whose token
scores to write; for a text model of your own, ``tidu.explain`` attributes to the embedding layer
(``layer=``) or occludes tokens.
"""
import argparse
import os
import re

import numpy as np

METHODS = {"ig": "integrated gradients", "saliency": "saliency", "ixg": "input x gradient",
           "smoothgrad": "SmoothGrad", "occlusion": "occlusion"}
ALIASES = {"integrated_gradients": "ig", "input_x_gradient": "ixg", "smooth_grad": "smoothgrad"}
MAX_IMAGES = 16


def register(sub):
    p = sub.add_parser("explain", help="attributions of a finished run's predictions: which features mattered",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by tidu train")
    p.add_argument("--input", required=True, metavar="FILE", help="the rows to explain: a CSV or Parquet file")
    p.add_argument("--method", default="ig", type=str.lower,
                   help=f"attribution method: {', '.join(METHODS)} (default: ig)")
    p.add_argument("--target", metavar="CLASS", help="the class to explain (default: each row's predicted class)")
    p.add_argument("--out", metavar="DIR", help="where to write the files (default: RUN_DIR/explain)")
    p.add_argument("--steps", type=int, default=64, help="integration steps of ig (default: 64)")
    p.set_defaults(func=run)


# --- what the model's inputs are ---

def feature_groups(preprocessor):
    """``[(source column, [input indices]), ...]``: each numeric column, and each categorical column
    with the indices of its one-hot columns, in the order of ``preprocessor.feature_names``."""
    groups, i = [], 0
    for col in preprocessor.numeric:
        groups.append((col, [i]))
        i += 1
    if preprocessor.encoder_ is not None:
        for col, cats in zip(preprocessor.categorical, preprocessor.encoder_.categories_):
            groups.append((col, list(range(i, i + len(cats)))))
            i += len(cats)
    return groups


def aggregate(attributions, groups):
    """Sum the attributions of each source column's inputs: (N, features) -> (N, columns)."""
    a = np.asarray(attributions, dtype=np.float64)
    return np.stack([a[:, idx].sum(1) for _, idx in groups], axis=1)


_PIXEL = re.compile(r"^(.*?)_?(\d+)_(\d+)$")


def image_shape(preprocessor):
    """``(height, width)`` when the inputs are the pixels of an image — numeric columns named
    ``<name>_<row>_<col>`` that fill a grid in row-major order, as digits' ``pixel_0_0 … pixel_7_7`` — else None."""
    if preprocessor.categorical or len(preprocessor.numeric) < 4:
        return None
    found = [_PIXEL.match(str(c)) for c in preprocessor.numeric]
    if not all(found) or len({m.group(1) for m in found}) != 1:
        return None
    rows, cols = (np.array([int(m.group(k)) for m in found]) for k in (2, 3))
    h, w = rows.max() + 1, cols.max() + 1
    if h * w != len(found) or not np.array_equal(rows * w + cols, np.arange(h * w)):
        return None
    return int(h), int(w)


# --- attributions ---

def baseline(run):
    """The point attributions start from, in the model's input space: a black image for images, the
    training mean (zeros after standardizing, no category) for a table."""
    pre = run.preprocessor
    base = np.zeros(len(pre.feature_names), dtype=np.float32)
    if image_shape(pre) is not None and pre.scaler_ is not None:
        base[:] = (0.0 - pre.scaler_.mean_) / pre.scaler_.scale_  # the standardized value of pixel 0
    return base


def resolve_target(run, target):
    """The class index to explain (None: each row's prediction); refuses unknown classes by name."""
    if target is None:
        return None
    if run.task != "classification":
        raise ValueError(f"--target {target!r}: the run is a regression; its predicted value is what is explained")
    from ..config import class_index
    return class_index(target, run.meta["classes"], run.meta["class_names"], "--target")


def explain_rows(run, X, method="ig", target=None, steps=64):
    """Attributions of ``X`` (preprocessed rows) for ``method``; returns ``(attributions (N, features),
    explained class per row or None, delta per row or None)``. ``target``: a class index or None (the
    predicted class of each row)."""
    import tidu.explain as ex
    from ..tensor import Tensor
    method = ALIASES.get(method, method)
    if method not in METHODS:
        raise ValueError(f"--method: unknown method {method!r}; choose one of {', '.join(METHODS)}")
    model = run.model
    model.eval()
    X = np.ascontiguousarray(X, dtype=np.float32)
    outputs = run.meta["n_outputs"]
    classes = None
    if run.task == "classification":
        if target is None:
            classes = run.trainer.predict_classes(X).astype(np.int64)
        else:
            classes = np.full(len(X), int(target), dtype=np.int64)
    if outputs == 1:  # a regression, or one logit for the second class: explain the logit (negated for class 0)
        sign = None if classes is None else np.where(classes == 0, -1.0, 1.0).astype(np.float32)

        def goal(out):  # the methods pass k copies of the batch, one after the other
            return out[:, 0] if sign is None else out[:, 0] * Tensor(np.tile(sign, out.shape[0] // len(sign)))
    else:
        goal = classes
    base = baseline(run)
    delta = None
    if method == "ig":
        attr, delta = ex.integrated_gradients(model, X, target=goal, baseline=base, steps=steps)
    elif method == "saliency":
        attr = ex.saliency(model, X, target=goal)
    elif method == "ixg":
        attr = ex.input_x_gradient(model, X, target=goal)
    elif method == "smoothgrad":
        attr = ex.smooth_grad(model, X, target=goal, seed=0)
    else:
        shape = image_shape(run.preprocessor)
        if shape is None:
            attr = ex.occlusion(model, X, target=goal, window=1, baseline=base)
        else:  # 2x2 patches of the image, each pixel covered by up to four windows
            flat = lambda x: model(x.reshape(x.shape[0], -1))  # noqa: E731
            attr = ex.occlusion(flat, X.reshape((-1,) + shape), target=goal, window=(2, 2), stride=(1, 1),
                                baseline=base.reshape(shape)).reshape(len(X), -1)
    attr = np.asarray(attr, dtype=np.float32)
    delta = None if delta is None else np.asarray(delta)
    scaler = run.preprocessor.target_scaler_
    if run.task != "classification" and scaler is not None:  # a standardized target: back to its own units
        unit = np.float32(scaler.scale_[0])
        attr, delta = attr * unit, None if delta is None else delta * unit
    return attr, classes, delta


# --- pictures ---

def plot_feature_bars(names, values, path, title, xlabel, top=20):
    """A horizontal bar chart of the ``top`` values by size, the largest on top (red positive, blue negative)."""
    from ..train.plots import _figure, _save
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(-np.abs(values), kind="stable")[:top][::-1]
    fig = _figure((7.0, max(2.5, 0.32 * len(order) + 1.3)))
    ax = fig.add_subplot()
    colors = ["#c0392b" if v >= 0 else "#2e6da4" for v in values[order]]
    ax.barh(range(len(order)), values[order], color=colors)
    ax.set_yticks(range(len(order)), labels=[str(names[i])[:40] for i in order])
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)


def plot_heatmaps(images, maps, titles, path, suptitle):
    """Each image (grey) beside its attribution map (red positive, blue negative, one symmetric scale)."""
    from ..train.plots import _figure, _save
    n = len(images)
    per_row = min(n, 4)
    rows = -(-n // per_row)
    fig = _figure((2.6 * per_row * 2 * 0.62 + 0.6, 1.75 * rows + 0.5))
    grid = fig.add_gridspec(rows, 2 * per_row)
    last, lim = None, float(np.abs(maps).max()) or 1.0
    for k, (img, amap, title) in enumerate(zip(images, maps, titles)):
        r, c = divmod(k, per_row)
        a1, a2 = fig.add_subplot(grid[r, 2 * c]), fig.add_subplot(grid[r, 2 * c + 1])
        a1.imshow(img, cmap="gray_r")
        last = a2.imshow(amap, cmap="RdBu_r", vmin=-lim, vmax=lim)
        a1.set_title(title, fontsize=8)
        a2.set_title("attribution", fontsize=8)
        for a in (a1, a2):
            a.set_xticks([])
            a.set_yticks([])
    if last is not None:
        fig.colorbar(last, ax=fig.axes, shrink=0.6, label="attribution")
    fig.suptitle(suptitle, fontsize=10)
    return _save(fig, path)


# --- the command ---

def explain(run_dir, rows, method="ig", target=None, out=None, steps=64):
    """Explain ``rows`` (a path or a DataFrame) with the run's model; writes the files and returns
    ``(paths, summary lines)``."""
    import pandas as pd
    from .train import Run
    method = ALIASES.get(method, method)
    if method not in METHODS:
        raise ValueError(f"--method: unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"--steps must be an integer of at least 2, got {steps!r}")
    run = Run(run_dir)
    what = repr(str(rows)) if not hasattr(rows, "columns") else "the rows"
    df, _ = run.features(rows, what)
    X, _ = run.preprocessor.transform(df.drop(columns=[run.meta["target"]], errors="ignore"))
    attr, classes, delta = explain_rows(run, X, method, resolve_target(run, target), steps)
    pre = run.preprocessor
    groups = feature_groups(pre)
    per_column = aggregate(attr, groups)
    names = [g for g, _ in groups]
    out = os.path.join(run.run_dir, "explain") if out is None else os.fspath(out)
    os.makedirs(out, exist_ok=True)

    table = pd.DataFrame({"row": np.arange(len(X))})
    class_names = run.meta["class_names"]
    if run.task == "classification":
        pred = run.trainer.predict_classes(X)
        table["prediction"] = np.asarray(class_names, dtype=object)[pred]
        table["explained_class"] = np.asarray(class_names, dtype=object)[classes]
    else:
        table["prediction"] = pre.inverse_transform_target(run.trainer.predict(X).reshape(-1))
    if delta is not None:
        table["convergence_delta"] = delta
    table = pd.concat([table, pd.DataFrame(per_column, columns=names)], axis=1)
    from ..io import atomic_write
    csv_path = os.path.join(out, "attributions.csv")
    with atomic_write(csv_path, "w") as f:
        table.to_csv(f, index=False, float_format="%.6g")
    paths = [csv_path]

    label = METHODS[method]
    explained = "the predicted value" if run.task != "classification" else (
        "each row's predicted class" if target is None else f"class {class_names[classes[0]]!r}")
    lines = [f"explained {len(X)} row{'s' if len(X) != 1 else ''} with {label} (score: {explained})"]
    if delta is not None:
        lines.append(f"convergence delta (sum of attributions - (f(row) - f(baseline))): largest "
                     f"{float(np.abs(delta).max()):.2g}")
    try:
        import matplotlib  # noqa: F401
        drawing = True
    except ImportError:
        drawing = False
        lines.append("(no PNG: matplotlib is not installed; pip install 'tidu[plot]')")
    shape = image_shape(pre)
    if shape is not None:
        k = min(len(X), MAX_IMAGES)
        raw = df[pre.numeric].to_numpy(dtype=np.float64)[:k].reshape((k,) + shape)
        titles = [f"row {i}: predicted {table['prediction'][i]}" for i in range(k)]
        if drawing:
            paths.append(plot_heatmaps(raw, attr[:k].reshape((k,) + shape), titles, os.path.join(out, "heatmap.png"),
                                       f"{label}, score: {explained}"))
    else:
        if len(X) == 1:
            values, xlabel = per_column[0], f"attribution ({label})"
            title = f"Row 0: predicted {table['prediction'][0]}; score: {explained}"
        else:
            values, xlabel = np.abs(per_column).mean(0), f"mean |attribution| over {len(X)} rows ({label})"
            title = "Features ranked by attribution"
        if drawing:
            paths.append(plot_feature_bars(names, values, os.path.join(out, "features.png"), title, xlabel))
        ranked = np.argsort(-np.abs(values), kind="stable")[:5]
        sign = "+" if len(X) == 1 else ""  # one row: signed; several: mean |attribution|
        lines.append("top features: " + ", ".join(f"{names[i]} {values[i]:{sign}.3g}" for i in ranked))
    return paths, lines


def run(args):
    paths, lines = explain(args.run_dir, args.input, args.method, args.target, args.out, args.steps)
    for line in lines:
        print(line)
    for path in paths:
        print(path)
    return 0

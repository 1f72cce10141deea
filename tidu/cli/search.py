"""``tidu search``: semantic search over the lines of a file with a pretrained sentence encoder.

Every non-empty line of the corpus and every query is embedded (all-MiniLM-L6-v2 by default); lines
are ranked by cosine similarity to the query, which is the dot product of the normalized embeddings.
Meaning counts, not shared words: "How do I reset my password?" finds "Forgot your login? Change
it under Account settings."

    tidu search --corpus faq.txt "how do I reset my password" --top-k 3
"""
import argparse

import numpy as np

from .embed import add_model_args, load_encoder, read_lines


def register(sub):
    p = sub.add_parser("search", help="rank the lines of a file by meaning against a query",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("queries", nargs="+", metavar="QUERY", help="what to look for (several queries: one ranking each)")
    p.add_argument("--corpus", required=True, metavar="FILE", help="the text file to search, one entry per line")
    p.add_argument("--top-k", type=int, default=5, help="how many lines to show per query (default 5)")
    add_model_args(p)
    p.set_defaults(func=run)


def rank(query_emb, corpus_emb, top_k):
    """(indices, scores) of the ``top_k`` corpus rows most similar to each query row, best first;
    rows are L2-normalized, so the dot product is the cosine similarity.

    >>> c = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    >>> idx, scores = rank(np.array([[0.0, 1.0]]), c, 2)
    >>> idx.tolist(), scores.round(2).tolist()
    ([[2, 1]], [[1.0, 0.8]])
    """
    scores = query_emb @ corpus_emb.T
    k = min(top_k, corpus_emb.shape[0])
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(scores, idx, axis=1)


def run(args):
    if args.top_k < 1:
        raise ValueError(f"--top-k must be at least 1, got {args.top_k}")
    corpus = read_lines(args.corpus)
    if not corpus:
        raise ValueError(f"--corpus {args.corpus} has no non-empty lines to search")
    enc = load_encoder(args)
    kw = dict(batch_size=args.batch_size, max_length=args.max_length)
    idx, scores = rank(enc.encode(args.queries, **kw), enc.encode(corpus, **kw), args.top_k)
    for q, (query, rows, ss) in enumerate(zip(args.queries, idx, scores)):
        if q:
            print()
        print(f"query: {query}")
        for r, (i, s) in enumerate(zip(rows, ss), 1):
            print(f"{r:>3}. {s:.4f}  {corpus[i]}")
    return 0

"""Greedy and beam-search decoding for encoder-decoder models (translation, summarization…).

Both work with any model that has two methods, on batch-first tensors:

- ``encode(src, src_key_padding_mask=None)`` → ``memory``, a Tensor with the batch in dimension 0;
- ``decode(tgt, memory, memory_key_padding_mask=None)`` → logits (N, T, vocab) for the target prefix
  ``tgt`` (N, T) of token ids (only the last position's logits are used).

The source is encoded once; each step runs the decoder on the whole prefix (no key/value cache: for
the short outputs these helpers are meant for, this is simple and cheap). They run under ``td.no_grad()``
and leave the model's train/eval mode alone: call ``model.eval()`` first. A hypothesis ends at ``eos_id``
or after ``max_len`` tokens; the returned token lists hold neither the BOS nor the EOS token.
"""
import numpy as np

from ..autograd import no_grad
from ..tensor import Tensor

__all__ = ["greedy_decode", "beam_search"]


def _check(op, model, beam_size, max_len):
    if not (callable(getattr(model, "encode", None)) and callable(getattr(model, "decode", None))):
        raise TypeError(f"{op}: needs a model with encode(src, src_key_padding_mask) and "
                        f"decode(tgt, memory, memory_key_padding_mask) methods, got {type(model).__name__}")
    if int(beam_size) < 1:
        raise ValueError(f"{op}: beam_size must be at least 1, got {beam_size}")
    if int(max_len) < 1:
        raise ValueError(f"{op}: max_len must be at least 1, got {max_len}")


def _array(x):
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def _log_softmax_last(logits):
    """log-probabilities of the next token, (N, V) float64, from the logits of the last position."""
    z = _array(logits)[:, -1].astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _encode(model, src, src_key_padding_mask):
    kpm = None if src_key_padding_mask is None else Tensor(_array(src_key_padding_mask))
    return model.encode(src, src_key_padding_mask=kpm), kpm


def greedy_decode(model, src, bos_id, eos_id, max_len=50, src_key_padding_mask=None):
    """The most likely next token at each step, for a batch of sources; returns a list of token-id lists.

    >>> import numpy as np, tidu as td
    >>> from tidu.text.decoding import greedy_decode
    >>> class Counter:                      # a toy model: emits 2, 3, 4 … then EOS (1) after 4
    ...     def encode(self, src, src_key_padding_mask=None): return src
    ...     def decode(self, tgt, memory, memory_key_padding_mask=None):
    ...         nxt = np.where(tgt.numpy()[:, -1] >= 4, 1, np.maximum(tgt.numpy()[:, -1] + 1, 2))
    ...         return td.tensor(np.eye(6, dtype=np.float32)[nxt][:, None] * 10)
    >>> greedy_decode(Counter(), td.zeros(2, 3), bos_id=0, eos_id=1, max_len=10)
    [[2, 3, 4], [2, 3, 4]]
    """
    _check("greedy_decode", model, 1, max_len)
    with no_grad():
        memory, kpm = _encode(model, src, src_key_padding_mask)
        n = memory.shape[0]
        ys = np.full((n, 1), bos_id, dtype=np.int64)
        done = np.zeros(n, dtype=bool)
        for _ in range(int(max_len)):
            nxt = _array(model.decode(Tensor(ys), memory, memory_key_padding_mask=kpm))[:, -1].argmax(axis=-1)
            nxt = np.where(done, eos_id, nxt)  # finished rows only pad with EOS
            ys = np.concatenate([ys, nxt[:, None].astype(np.int64)], axis=1)
            done |= nxt == eos_id
            if done.all():
                break
    out = []
    for row in ys[:, 1:].tolist():
        out.append(row[:row.index(eos_id)] if eos_id in row else row)
    return out


def beam_search(model, src, bos_id, eos_id, beam_size=4, max_len=50, length_penalty=1.0,
                src_key_padding_mask=None, return_scores=False):
    """Keep the ``beam_size`` most likely prefixes per source; return the best finished hypothesis of each.

    A hypothesis's score is its total log-probability divided by ``length ** length_penalty``, where the
    length counts its tokens and its EOS (``length_penalty=0``: the raw log-probability, which favours
    short outputs; 1: the mean log-probability per token). As in Hugging Face's ``generate``, each step
    ranks the 2·beam_size best extensions by total log-probability: one that ends in EOS among the first
    beam_size is set aside as finished, the others continue. A source is done once it has ``beam_size``
    finished hypotheses and no live prefix can still beat the worst of them (its log-probability only
    falls as it grows); prefixes still live after ``max_len`` tokens are finished as they are.
    ``beam_size=1`` is greedy decoding. With ``return_scores`` also returns the scores (a list of floats).

    >>> import numpy as np, tidu as td
    >>> from tidu.text.decoding import beam_search
    >>> class Toy:   # after BOS: token 2 (p 0.6) or 3 (0.4); after 2: EOS 0.3, 2 or 3 0.35 each; after 3: EOS
    ...     P = np.log(np.array([[0, 0, .6, .4], [0, 1, 0, 0], [0, .3, .35, .35], [0, 1, 0, 0]]) + 1e-12)
    ...     def encode(self, src, src_key_padding_mask=None): return src
    ...     def decode(self, tgt, memory, memory_key_padding_mask=None):
    ...         return td.tensor(self.P[tgt.numpy()[:, -1]][:, None].astype(np.float32))
    >>> beam_search(Toy(), td.zeros(1, 1), bos_id=0, eos_id=1, beam_size=2, length_penalty=0.0)
    [[3]]
    """
    _check("beam_search", model, beam_size, max_len)
    k, max_len = int(beam_size), int(max_len)
    with no_grad():
        memory, kpm = _encode(model, src, src_key_padding_mask)
        n = memory.shape[0]
        rows = np.repeat(np.arange(n), k)  # beam b of source i is row i·k + b
        memory = memory[rows]
        kpm = None if kpm is None else Tensor(kpm.data[rows])
        ys = np.full((n * k, 1), bos_id, dtype=np.int64)
        scores = np.full((n, k), -np.inf)
        scores[:, 0] = 0.0  # one live prefix at the start, not k copies of it
        finished = [[] for _ in range(n)]  # (normalized score, tokens) per source
        done = np.zeros(n, dtype=bool)

        def norm(total, length):
            return total / (length ** length_penalty)

        for step in range(1, max_len + 1):
            logp = _log_softmax_last(model.decode(Tensor(ys), memory, memory_key_padding_mask=kpm))
            v = logp.shape[1]
            cand = (scores[:, :, None] + logp.reshape(n, k, v)).reshape(n, k * v)
            top = np.argsort(-cand, axis=1, kind="stable")[:, :2 * k]
            new_rows, new_tok = np.zeros((n, k), np.int64), np.full((n, k), eos_id)
            new_scores = np.full((n, k), -np.inf)
            for i in range(n):
                if done[i]:
                    continue
                live = 0
                for rank, c in enumerate(top[i]):
                    total = cand[i, c]
                    if not np.isfinite(total) or live == k:
                        break
                    beam, tok = divmod(int(c), v)
                    if tok == eos_id:
                        if rank < k:
                            finished[i].append((norm(total, step), ys[i * k + beam, 1:].tolist()))
                        continue
                    new_rows[i, live], new_tok[i, live], new_scores[i, live] = i * k + beam, tok, total
                    live += 1
                finished[i] = sorted(finished[i], key=lambda h: -h[0])[:k]
                best_live = new_scores[i].max()
                # log-probabilities only fall: the best a live prefix can still reach, over any length up to max_len
                reach = max(norm(best_live, step + 1), norm(best_live, max_len)) if np.isfinite(best_live) else -np.inf
                done[i] = (len(finished[i]) == k and finished[i][-1][0] >= reach) or not np.isfinite(best_live)
            if done.all():
                break
            base = np.repeat(np.arange(n) * k, k)  # done sources keep stale rows: cheap, and ignored
            r = np.where(np.repeat(done, k), base, new_rows.reshape(-1))
            ys = np.concatenate([ys[r], new_tok.reshape(-1, 1)], axis=1)
            scores = np.where(done[:, None], -np.inf, new_scores)
        for i in range(n):  # prefixes still live at max_len end there
            if not done[i]:
                for b in range(k):
                    if np.isfinite(scores[i, b]):
                        finished[i].append((norm(scores[i, b], max_len), ys[i * k + b, 1:].tolist()))
                finished[i] = sorted(finished[i], key=lambda h: -h[0])
    best = [f[0] if f else (-np.inf, []) for f in finished]
    seqs = [b[1] for b in best]
    return (seqs, [float(b[0]) for b in best]) if return_scores else seqs

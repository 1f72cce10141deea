"""BERT, as Hugging Face's ``BertModel`` lays it out, so its checkpoints load by name.

The modules and their parameter names mirror ``transformers``' (``embeddings.word_embeddings.weight``,
``encoder.layer.0.attention.self.query.weight``, ``encoder.layer.0.output.LayerNorm.bias`` …), so a
BERT-family state_dict (BERT, MiniLM, the sentence-transformers encoders) loads with a strict
``load_state_dict``. Everything is computed in float32 with tidu's ops: a stable softmax (the row
maximum is subtracted first) and a fused layer norm.

>>> import tidu as td
>>> from tidu.nn.pretrained.bert import BertConfig, BertModel
>>> cfg = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
...                  intermediate_size=32, max_position_embeddings=20)
>>> model = BertModel(cfg).eval()
>>> ids = td.tensor([[1, 7, 8, 2], [1, 9, 2, 0]])
>>> mask = td.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
>>> model(ids, mask).shape
(2, 4, 16)
>>> sorted(model.state_dict())[:2]
['embeddings.LayerNorm.bias', 'embeddings.LayerNorm.weight']
"""
import dataclasses
import math

import numpy as np

from ... import ops
from ...autograd import no_grad
from ...tensor import Tensor
from .. import init
from ..container import ModuleList
from ..linear import Dropout, Embedding, Linear
from ..module import Module
from ..normalization import LayerNorm

__all__ = ["BertConfig", "BertEmbeddings", "BertSelfAttention", "BertSelfOutput", "BertAttention",
           "BertIntermediate", "BertOutput", "BertLayer", "BertEncoder", "BertPooler", "BertModel",
           "mean_pool", "attention_bias"]

_ACTIVATIONS = {"gelu": ops.gelu, "gelu_new": lambda x: ops.gelu(x, approximate="tanh"),
                "gelu_pytorch_tanh": lambda x: ops.gelu(x, approximate="tanh"), "relu": ops.relu,
                "silu": ops.silu, "swish": ops.silu, "tanh": ops.tanh}


@dataclasses.dataclass
class BertConfig:
    """The fields of a Hugging Face BERT ``config.json`` that shape the model (others are ignored)."""
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    position_embedding_type: str = "absolute"

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"BertConfig: hidden_size {self.hidden_size} is not a multiple of "
                             f"num_attention_heads {self.num_attention_heads}")
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"BertConfig: hidden_act {self.hidden_act!r} is not supported; "
                             f"expected one of {sorted(_ACTIVATIONS)}")
        if self.position_embedding_type != "absolute":
            raise ValueError(f"BertConfig: position_embedding_type {self.position_embedding_type!r} is not "
                             "supported; only 'absolute' (learned positions, as in BERT and MiniLM)")

    @classmethod
    def from_dict(cls, d):
        """Build from a parsed ``config.json``, keeping the fields BERT uses."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _as_texts(texts):
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
    if bad:
        raise TypeError(f"BertModel: texts must be a string or a list of strings, got an item of type {bad[0]}")
    return texts


def _init_bert(module, std):
    """BERT's initialization: N(0, std) for linear and embedding weights, zero biases, unit LayerNorm."""
    for m in module.modules():
        if isinstance(m, (Linear, Embedding)):
            init.normal_(m.weight, 0.0, std)
        if isinstance(m, Linear) and m.bias is not None:
            init.zeros_(m.bias)
        if isinstance(m, Embedding) and m.padding_idx is not None:
            m.weight.data[m.padding_idx] = 0


def attention_bias(attention_mask, dtype=np.float32):
    """An additive attention mask of shape (B, 1, 1, L) from a (B, L) mask of 1 (attend) and 0 (padding):
    0 on real keys, the most negative finite number on padded ones, so their softmax weight is exactly 0.

    >>> attention_bias(np.array([[1, 1, 0]])).shape
    (1, 1, 1, 3)
    >>> attention_bias(np.array([[1, 1, 0]]))[0, 0, 0, 2].item() < -1e38
    True
    """
    m = attention_mask.data if isinstance(attention_mask, Tensor) else np.asarray(attention_mask)
    bias = np.where(m.astype(bool), 0.0, np.finfo(dtype).min).astype(dtype)
    return Tensor(bias[:, None, None, :])


def _softmax_attention(q, k, v, bias, dropout_p, training):
    """softmax(q kᵀ + bias) v on (B, H, L, D) tensors, with q already scaled by 1/√D."""
    scores = ops.matmul(q, ops.transpose(k, -1, -2))
    if bias is not None:
        scores = scores + bias
    probs = ops.dropout(ops.softmax(scores, dim=-1), dropout_p, training)
    return ops.matmul(probs, v)


class BertEmbeddings(Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout."""

    def __init__(self, config):
        super().__init__()
        self.word_embeddings = Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids=None):
        batch, length = input_ids.shape
        limit = self.position_embeddings.num_embeddings
        if length > limit:
            raise ValueError(f"BertEmbeddings: a sequence of {length} tokens is longer than the position table "
                             f"({limit} positions); truncate the input to at most {limit} tokens")
        ids = input_ids.data
        for name, table, idx in (("input_ids", self.word_embeddings, ids),
                                 ("token_type_ids", self.token_type_embeddings,
                                  None if token_type_ids is None else token_type_ids.data)):
            if idx is not None and idx.size and (idx.min() < 0 or idx.max() >= table.num_embeddings):
                bad = idx.min() if idx.min() < 0 else idx.max()
                n = table.num_embeddings
                raise ValueError(f"BertEmbeddings: {name} holds id {bad}, out of range for the {n} rows of its "
                                 f"table (valid ids are 0..{n - 1})")
        x = self.word_embeddings(input_ids)
        # positions and token types are the same for every row: add a (L, H) slice, broadcast over the batch
        x = x + self.position_embeddings.weight[:length]
        if token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(Module):
    """Multi-head scaled dot-product attention with separate query, key and value projections."""

    def __init__(self, config):
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.query = Linear(config.hidden_size, config.hidden_size)
        self.key = Linear(config.hidden_size, config.hidden_size)
        self.value = Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob

    def _heads(self, x):  # (B, L, H·D) -> (B, H, L, D)
        b, n, _ = x.shape
        return ops.permute(ops.reshape(x, (b, n, self.num_attention_heads, self.attention_head_size)), (0, 2, 1, 3))

    def forward(self, hidden_states, bias=None):
        b, n, width = hidden_states.shape
        q = self._heads(self.query(hidden_states))
        k, v = self._heads(self.key(hidden_states)), self._heads(self.value(hidden_states))
        p = self.dropout_p if self.training else 0.0
        sdpa = getattr(ops, "scaled_dot_product_attention", None)
        if sdpa is not None:  # the fused op, scale 1/√D
            ctx = sdpa(q, k, v, attn_mask=bias, dropout_p=p)
        else:  # scaling q (B·L·H·D numbers) is cheaper than scaling the (B·H·L·L) scores
            ctx = _softmax_attention(q * (1.0 / math.sqrt(self.attention_head_size)), k, v, bias, p, self.training)
        return ops.reshape(ops.permute(ctx, (0, 2, 1, 3)), (b, n, width))


class BertSelfOutput(Module):
    """Project the attention output, add the residual, LayerNorm."""

    def __init__(self, config):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BertAttention(Module):
    def __init__(self, config):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states, bias=None):
        return self.output(self.self(hidden_states, bias), hidden_states)


class BertIntermediate(Module):
    """The feed-forward block's expansion: Linear to ``intermediate_size``, then the activation (GELU)."""

    def __init__(self, config):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.intermediate_size)
        self.act = _ACTIVATIONS[config.hidden_act]

    def forward(self, hidden_states):
        return self.act(self.dense(hidden_states))


class BertOutput(Module):
    """The feed-forward block's projection back, plus the residual and LayerNorm."""

    def __init__(self, config):
        super().__init__()
        self.dense = Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BertLayer(Module):
    """One post-LayerNorm transformer encoder layer: self-attention, then the feed-forward block."""

    def __init__(self, config):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states, bias=None):
        h = self.attention(hidden_states, bias)
        return self.output(self.intermediate(h), h)


class BertEncoder(Module):
    def __init__(self, config):
        super().__init__()
        self.layer = ModuleList([BertLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, hidden_states, bias=None):
        for layer in self.layer:
            hidden_states = layer(hidden_states, bias)
        return hidden_states


class BertPooler(Module):
    """tanh(Linear(hidden state of the first token)): BERT's next-sentence head, kept so checkpoints load."""

    def __init__(self, config):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states):
        return ops.tanh(self.dense(hidden_states[:, 0]))


def mean_pool(hidden_states, attention_mask):
    """The mean of the token vectors over the real (mask 1) tokens: (B, L, H), (B, L) -> (B, H).

    >>> import tidu as td
    >>> h = td.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    >>> mean_pool(h, td.tensor([[1, 1, 0]]))
    tensor([[2., 3.]])
    """
    m = attention_mask.data if isinstance(attention_mask, Tensor) else np.asarray(attention_mask)
    m = m.astype(hidden_states.dtype)
    # padded tokens weigh 0; a row without any real token divides by a tiny number, not by 0
    summed = ops.sum(hidden_states * Tensor(m[:, :, None]), dim=1)
    return summed / Tensor(np.maximum(m.sum(axis=1, keepdims=True), 1e-9).astype(m.dtype))


class BertModel(Module):
    """BERT: embeddings, ``num_hidden_layers`` encoder layers and (optionally) the pooler.

    ``model(input_ids, attention_mask=None, token_type_ids=None)`` returns the last hidden states,
    (B, L, hidden_size). ``tidu.nn.pretrained.load`` builds one from a checkpoint folder and attaches
    its tokenizer, which makes ``encode(texts)`` (sentence embeddings) available.
    """

    def __init__(self, config, add_pooling_layer=True):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        _init_bert(self, config.initializer_range)
        self.tokenizer = None  # set by load(): a tokenizers.Tokenizer
        self.max_seq_length = config.max_position_embeddings
        self.pooling = "mean"

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        if not isinstance(input_ids, Tensor):
            input_ids = Tensor(np.asarray(input_ids))
        if input_ids.ndim != 2 or input_ids.dtype.kind not in "iu":
            raise ValueError(f"BertModel: input_ids must be a (batch, length) integer tensor, got shape "
                             f"{tuple(input_ids.shape)} and dtype {input_ids.dtype}")
        for name, t in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if t is not None and tuple(t.shape) != tuple(input_ids.shape):
                raise ValueError(f"BertModel: {name} of shape {tuple(t.shape)} does not match input_ids of shape "
                                 f"{tuple(input_ids.shape)}")
        if token_type_ids is not None and not isinstance(token_type_ids, Tensor):
            token_type_ids = Tensor(np.asarray(token_type_ids))
        m = None if attention_mask is None else np.asarray(getattr(attention_mask, "data", attention_mask))
        bias = None if m is None or m.all() else attention_bias(m)  # no padding: nothing to mask
        return self.encoder(self.embeddings(input_ids, token_type_ids), bias)

    # --- sentence embeddings (needs the tokenizer that load() attaches) ---
    def tokenize(self, texts, max_length=None):
        """Token ids, attention mask and token types of ``texts``, truncated to ``max_length`` tokens
        (``max_seq_length`` by default) and padded to the longest: three (N, L) int64 arrays."""
        return self._pad(self._encodings(_as_texts(texts), max_length))

    def _encodings(self, texts, max_length):
        if self.tokenizer is None:
            raise ValueError("BertModel: this model has no tokenizer; build it with tidu.nn.pretrained.load(...), "
                             "which attaches the checkpoint's tokenizer")
        n = self.max_seq_length if max_length is None else int(max_length)
        if not 2 <= n <= self.config.max_position_embeddings:
            raise ValueError(f"BertModel: max_length must lie in 2..{self.config.max_position_embeddings} "
                             f"(the position table), got {n}")
        tok = self.tokenizer
        if (tok.truncation or {}).get("max_length") != n:
            tok.enable_truncation(max_length=n)  # [CLS] and [SEP] included
        return tok.encode_batch(texts)

    def _pad(self, encodings):
        width = max((len(e.ids) for e in encodings), default=0)
        ids = np.full((len(encodings), width), self.config.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for i, e in enumerate(encodings):
            k = len(e.ids)
            ids[i, :k], mask[i, :k], types[i, :k] = e.ids, e.attention_mask, e.type_ids
        return ids, mask, types

    def encode(self, texts, batch_size=32, normalize=True, max_length=None):
        """Sentence embeddings of ``texts`` (a string or a list of strings): an (N, hidden_size) float32
        array, the mean of the last hidden states over each text's real tokens, L2-normalized unless
        ``normalize=False``, as sentence-transformers computes them. Texts are truncated to
        ``max_length`` tokens (``max_seq_length``, 256 for all-MiniLM-L6-v2, by default) and grouped
        by length into batches of ``batch_size``, each padded to its longest text."""
        texts = _as_texts(texts)
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"BertModel.encode: batch_size must be a positive integer, got {batch_size!r}")
        encodings = self._encodings(texts, max_length)
        out = np.empty((len(texts), self.config.hidden_size), dtype=np.float32)
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")  # longest first: little padding
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                for start in range(0, len(texts), batch_size):
                    rows = order[start:start + batch_size]
                    ids, mask, types = self._pad([encodings[i] for i in rows])
                    m = Tensor(mask)
                    pooled = mean_pool(self(Tensor(ids), m, Tensor(types)), m)
                    if normalize:
                        pooled = pooled / ops.clamp(ops.norm(pooled, 2, dim=1, keepdim=True), min=1e-12)
                    out[rows] = pooled.data
        finally:
            self.train(was_training)
        return out

    def extra_repr(self):
        c = self.config
        return (f"layers={c.num_hidden_layers}, hidden={c.hidden_size}, heads={c.num_attention_heads}, "
                f"vocab={c.vocab_size}, max_seq_length={self.max_seq_length}")

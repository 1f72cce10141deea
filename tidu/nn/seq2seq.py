"""The encoder-decoder transformer (Vaswani et al., 2017), as PyTorch's: ``TransformerDecoderLayer``,
``TransformerDecoder`` and ``Transformer``.

Submodule names are PyTorch's (``self_attn``, ``multihead_attn``, ``linear1``, ``linear2``, ``norm1``–``norm3``,
``encoder.layers.0…``, ``decoder.layers.0…``, ``encoder.norm``, ``decoder.norm``), so a PyTorch state_dict
loads by name. Masks follow ``MultiheadAttention``: a bool True (or a float ``-inf``) blocks a position.
"""
import copy

import numpy as np

from .. import backend
from ..tensor import Tensor
from . import init
from .attention import MultiheadAttention
from .container import ModuleList
from .linear import Dropout, Linear
from .module import Module
from .transformer import TransformerEncoder, TransformerEncoderLayer, _activation, _norm

__all__ = ["TransformerDecoderLayer", "TransformerDecoder", "Transformer"]


def _causal_mask(n):
    return np.triu(np.ones((n, n), dtype=bool), k=1)  # True above the diagonal: may not attend to the future


class TransformerDecoderLayer(Module):
    """Self-attention over the target, attention to the encoder's output (``memory``) and a feed-forward
    network, each with a residual connection and layer norm (after each, or before with ``norm_first=True``):
    PyTorch's ``nn.TransformerDecoderLayer``.

    ``forward(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False)``; ``tgt_is_causal=True``
    without a ``tgt_mask`` makes the self-attention causal.

    >>> import tidu as td
    >>> import tidu.nn as nn
    >>> from tidu.nn.seq2seq import TransformerDecoderLayer
    >>> layer = TransformerDecoderLayer(d_model=16, nhead=4, dim_feedforward=32, batch_first=True)
    >>> layer(td.randn(2, 5, 16), td.randn(2, 7, 16), tgt_is_causal=True).shape
    (2, 5, 16)
    >>> sorted(k.split(".", 1)[1] for k in layer.state_dict() if k.startswith("multihead_attn."))
    ['in_proj_bias', 'in_proj_weight', 'out_proj.bias', 'out_proj.weight']
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu", layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True, device=None, dtype=None):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            dtype=dtype)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                                 batch_first=batch_first, dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = _norm("layer", d_model, layer_norm_eps, bias)
        self.norm2 = _norm("layer", d_model, layer_norm_eps, bias)
        self.norm3 = _norm("layer", d_model, layer_norm_eps, bias)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)
        self.activation = _activation(type(self).__name__, activation)
        if device is not None:
            self.to(device=device)

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False):
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask, memory_key_padding_mask, memory_is_causal)
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
            x = self.norm2(x + self._mha_block(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal))
            x = self.norm3(x + self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        if is_causal and attn_mask is None and key_padding_mask is not None:
            # MultiheadAttention takes is_causal only as a hint once any mask is given: spell the causal mask out
            attn_mask = _causal_mask(x.shape[1 if self.self_attn.batch_first and x.ndim == 3 else 0])
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                           is_causal=is_causal)[0]
        return self.dropout1(x)

    def _mha_block(self, x, mem, attn_mask, key_padding_mask, is_causal):
        x = self.multihead_attn(x, mem, mem, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                need_weights=False, is_causal=is_causal)[0]
        return self.dropout2(x)

    def _ff_block(self, x):
        return self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class TransformerDecoder(Module):
    """``num_layers`` copies of ``decoder_layer`` (``layers.0``, ``layers.1`` …), then an optional ``norm``.

    >>> import tidu as td
    >>> from tidu.nn.seq2seq import TransformerDecoder, TransformerDecoderLayer
    >>> dec = TransformerDecoder(TransformerDecoderLayer(8, 2, 16, batch_first=True), num_layers=2)
    >>> dec(td.randn(3, 4, 8), td.randn(3, 6, 8)).shape, len(dec.layers)
    ((3, 4, 8), 2)
    """

    def __init__(self, decoder_layer, num_layers, norm=None):
        super().__init__()
        self.layers = ModuleList([copy.deepcopy(decoder_layer) for _ in range(num_layers)])
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False):
        x = tgt
        for layer in self.layers:
            x = layer(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask, tgt_key_padding_mask=tgt_key_padding_mask,
                      memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=bool(tgt_is_causal),
                      memory_is_causal=memory_is_causal)
        return self.norm(x) if self.norm is not None else x


class Transformer(Module):
    """The encoder-decoder transformer of "Attention Is All You Need": PyTorch's ``nn.Transformer``, with its
    constructor, its ``forward`` and its parameter names. The model takes embedded sequences (``d_model``
    features); token embeddings, positions and the output layer are the user's, as in PyTorch.

    ``forward(src, tgt, src_mask=None, tgt_mask=None, memory_mask=None, src_key_padding_mask=None,
    tgt_key_padding_mask=None, memory_key_padding_mask=None, src_is_causal=None, tgt_is_causal=None,
    memory_is_causal=False)`` with src (S, N, E) and tgt (T, N, E) — (N, ·, E) with ``batch_first=True`` —
    returns (T, N, E). Weights with more than one dimension are Xavier-uniform initialized, as in PyTorch.

    >>> import tidu as td
    >>> from tidu.nn.seq2seq import Transformer
    >>> model = Transformer(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=32,
    ...                     batch_first=True)
    >>> src, tgt = td.randn(2, 7, 16), td.randn(2, 5, 16)
    >>> model(src, tgt, tgt_mask=Transformer.generate_square_subsequent_mask(5)).shape
    (2, 5, 16)
    >>> Transformer.generate_square_subsequent_mask(3)
    tensor([[  0., -inf, -inf],
            [  0.,   0., -inf],
            [  0.,   0.,   0.]])
    """

    def __init__(self, d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6, dim_feedforward=2048,
                 dropout=0.1, activation="relu", custom_encoder=None, custom_decoder=None, layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True, device=None, dtype=None):
        super().__init__()
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps,
                                            batch_first, norm_first, bias, dtype=dtype)
            self.encoder = TransformerEncoder(layer, num_encoder_layers, _norm("layer", d_model, layer_norm_eps, bias))
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            layer = TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps,
                                            batch_first, norm_first, bias, dtype=dtype)
            self.decoder = TransformerDecoder(layer, num_decoder_layers, _norm("layer", d_model, layer_norm_eps, bias))
        self._reset_parameters()
        self.d_model, self.nhead, self.batch_first = d_model, nhead, batch_first
        if device is not None:
            self.to(device=device)

    def _reset_parameters(self):
        for p in self.parameters():
            if p.ndim > 1:
                init.xavier_uniform_(p)

    def forward(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None, src_key_padding_mask=None,
                tgt_key_padding_mask=None, memory_key_padding_mask=None, src_is_causal=None, tgt_is_causal=None,
                memory_is_causal=False):
        for name, t in (("src", src), ("tgt", tgt)):
            if not isinstance(t, Tensor):
                raise TypeError(f"Transformer: {name} must be a Tensor, got {type(t).__name__}")
        if src.ndim != tgt.ndim:
            raise ValueError(f"Transformer: src of shape {tuple(src.shape)} and tgt of shape {tuple(tgt.shape)} must "
                             "both be batched (3-D) or both unbatched (2-D)")
        if src.ndim == 3:
            b = 0 if self.batch_first else 1
            if src.shape[b] != tgt.shape[b]:
                raise ValueError(f"Transformer: the batch sizes of src {tuple(src.shape)} and tgt {tuple(tgt.shape)} "
                                 f"(dimension {b} with batch_first={self.batch_first}) must be equal")
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise ValueError(f"Transformer: src {tuple(src.shape)} and tgt {tuple(tgt.shape)} must have d_model = "
                             f"{self.d_model} features in their last dimension")
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                            tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)

    @staticmethod
    def generate_square_subsequent_mask(sz, device=None, dtype=None):
        """A float (sz, sz) mask: 0 on and below the diagonal, -inf above (position i sees positions 0..i)."""
        dt = np.dtype(dtype) if dtype is not None else backend.get_default_dtype()
        mask = Tensor(np.where(_causal_mask(sz), -np.inf, 0.0).astype(dt))
        return mask.to(device) if device is not None else mask

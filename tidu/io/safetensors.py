"""``td.save`` / ``td.load``: nested dicts of tensors and numbers in one safetensors file. Never pickle.

Tensors are stored as safetensors entries named by their dotted path (a flat state_dict keeps its own
keys, so PyTorch's ``safetensors.torch.load_file`` reads the weights by name). Everything else — numbers,
strings, lists, nesting — goes into a JSON document in the header's ``__metadata__``. A file written by
anyone else (no tidu metadata) loads as a flat dict of tensors.
"""
import json
import os

import numpy as np

from ..tensor import Tensor
from .files import atomic_write

_META_KEY = "tidu"
_FORMAT = 1


class CheckpointError(ValueError):
    """A file that is not a readable tidu / safetensors checkpoint, or does not fit the model."""


def _encode(obj, path, tensors):
    """Replace tensors/arrays by references into ``tensors``; return a JSON-able structure."""
    if isinstance(obj, (Tensor, np.ndarray)):
        array = obj.numpy() if isinstance(obj, Tensor) else obj
        name = ".".join(path) or "tensor"
        while name in tensors:  # dotted paths of different nestings may collide
            name += "_"
        tensors[name] = np.ascontiguousarray(array).reshape(array.shape)  # ascontiguousarray makes 0-d 1-d
        return {"__tensor__": name, "kind": "tensor" if isinstance(obj, Tensor) else "ndarray"}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"save: dict keys must be str or int, got {type(k).__name__} at {'.'.join(path) or '<root>'}")
            items.append([k, _encode(v, path + [str(k)], tensors)])
        return {"__dict__": items}
    if isinstance(obj, (list, tuple)):
        return {"__list__" if isinstance(obj, list) else "__tuple__":
                [_encode(v, path + [str(i)], tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"save: cannot store {type(obj).__name__} at {'.'.join(path) or '<root>'}; "
                    "only tensors, arrays, numbers, strings, None, lists, tuples and dicts are saved (never pickle)")


def _decode(node, tensors, where):
    if isinstance(node, dict):
        if "__tensor__" in node:
            name = node["__tensor__"]
            if name not in tensors:
                raise CheckpointError(f"load: {where}: metadata refers to tensor {name!r}, which is not in the file")
            array = tensors[name]
            return Tensor(array) if node.get("kind", "tensor") == "tensor" else array
        if "__dict__" in node:
            return {k: _decode(v, tensors, where) for k, v in node["__dict__"]}
        if "__list__" in node:
            return [_decode(v, tensors, where) for v in node["__list__"]]
        if "__tuple__" in node:
            return tuple(_decode(v, tensors, where) for v in node["__tuple__"])
    return node


def save(obj, path):
    """Write ``obj`` (a dict, possibly nested, of tensors, arrays, numbers and strings) to ``path``.

    The file is written to a temporary name and renamed, so an existing file survives a failed save.

    >>> import tidu as td, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "m.safetensors")
    >>> td.save({"w": td.ones(2), "step": 3, "opt": {"lr": 0.1}}, p)
    >>> d = td.load(p); d["w"], d["step"], d["opt"]
    (tensor([1., 1.]), 3, {'lr': 0.1})
    """
    from safetensors.numpy import save as st_save
    if not isinstance(obj, dict):
        raise TypeError(f"save: expected a dict (for example model.state_dict()), got {type(obj).__name__}")
    tensors = {}
    structure = _encode(obj, [], tensors)
    meta = {_META_KEY: json.dumps({"format": _FORMAT, "structure": structure})}
    payload = st_save(tensors, metadata=meta)
    with atomic_write(path, "wb") as f:
        f.write(payload)


def load(path, map_location=None):
    """Read a file written by :func:`save` (or any safetensors file) back into tensors."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no such file {path!r}")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        tensors = st_load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + header_len])
    except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError) as e:
        raise CheckpointError(f"load: {path!r} is not a valid safetensors file (truncated or corrupted?): {e}") from None
    meta = (header.get("__metadata__") or {}).get(_META_KEY)
    if meta is None:  # written by another library: a flat dict of tensors
        result = {k: Tensor(v) for k, v in tensors.items()}
    else:
        try:
            doc = json.loads(meta)
        except ValueError:
            raise CheckpointError(f"load: {path!r} has unreadable tidu metadata") from None
        result = _decode(doc["structure"], tensors, path)
    if map_location is not None and str(map_location) != "cpu":
        result = _to_device(result, map_location)
    return result


def _to_device(obj, device):
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj

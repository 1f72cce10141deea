"""Image transforms for training: ``ToTensor``, ``Normalize``, ``RandomCrop``, ``RandomHorizontalFlip``,
``RandomVerticalFlip``, ``Compose``, ``Lambda``, and ``TransformDataset`` to put them in front of a dataset.

Images are (C, H, W) arrays (and batches (N, C, H, W)), as in torchvision. Every transform works on
one sample (``t(x)``) and on a whole batch at once (``t.apply_batch(xb)``): a ``TransformDataset``
over a ``TensorDataset`` hands the ``DataLoader`` whole batches, so a random crop of 64 images is one
gather from a strided view of the padded batch, not 64 Python calls. A NumPy array in gives an
array out, a Tensor in gives a Tensor out (``ToTensor`` always returns a Tensor); transforms are
data preparation, outside the autograd graph.

Random transforms draw from their own NumPy generator: ``generator=`` or ``seed=``, or else one
seeded from tidu's global RNG when the transform is created — so ``td.manual_seed`` before building
them makes the augmentation repeat, and a prefetching loader draws in the same order.

>>> import numpy as np, tidu as td
>>> from tidu.data.transforms import Compose, Normalize, RandomCrop, RandomHorizontalFlip, TransformDataset
>>> X = np.arange(2 * 16, dtype=np.float32).reshape(2, 1, 4, 4)
>>> augment = Compose([RandomCrop(4, padding=1, seed=0), RandomHorizontalFlip(seed=0), Normalize([8.0], [4.0])])
>>> ds = TransformDataset(td.data.TensorDataset(X, np.array([0, 1])), augment)
>>> xb, yb = next(iter(td.data.DataLoader(ds, batch_size=2)))
>>> xb.shape, xb.dtype, yb.tolist()
((2, 1, 4, 4), dtype('float32'), [0, 1])
"""
import numbers

import numpy as np

from .. import backend
from ..tensor import Tensor
from .dataset import Dataset
from .loader import _new_generator

__all__ = ["Transform", "Compose", "Lambda", "ToTensor", "Normalize", "RandomCrop", "RandomHorizontalFlip",
           "RandomVerticalFlip", "TransformDataset"]


def _unwrap(x):
    """(array, was_tensor)."""
    if isinstance(x, Tensor):
        return x.data, True
    if isinstance(x, np.ndarray) or backend.array_module(x) is not np:
        return x, False
    return np.asarray(x), False


def _wrap(a, was_tensor):
    return Tensor(a) if was_tensor else a


def _image(op, a, batched):
    """Check that ``a`` is a (C, H, W) image, or an (N, C, H, W) batch of them."""
    want = 4 if batched else 3
    if a.ndim != want:
        layout = "an (N, C, H, W) batch" if batched else "a (C, H, W) image"
        raise ValueError(f"{op}: expected {layout}, got shape {tuple(a.shape)}"
                         + ("; convert (H, W) or (H, W, C) arrays with ToTensor() first" if a.ndim in (2, 3) else ""))


class Transform:
    """Base class: define ``apply_batch(array)`` on an (N, ...) batch; ``t(x)`` on one sample runs it
    on a batch of one. A subclass may also define ``apply(array)`` for single samples."""

    def __call__(self, x):
        a, was_tensor = _unwrap(x)
        return _wrap(self.apply(a), was_tensor)

    def apply(self, a):
        return self.apply_batch(a[None])[0]

    def apply_batch(self, a):
        raise NotImplementedError(f"{type(self).__name__} must define apply_batch")

    def batch(self, x):
        """The transform on a batch (N, ...): a Tensor or an array, returned as the same kind."""
        a, was_tensor = _unwrap(x)
        return _wrap(self.apply_batch(a), was_tensor)

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self):
        return ""


def _apply_batch(t, a):
    """A transform, or any function of one sample, on a batch."""
    if isinstance(t, Transform):
        return t.apply_batch(a)
    return backend.array_module(a).stack([_unwrap(t(s))[0] for s in a])  # plain functions: sample by sample


class Compose(Transform):
    """Apply transforms one after another. Plain functions are allowed (called on one sample at a time).

    >>> t = Compose([ToTensor(), Normalize([0.5], [0.5])])
    >>> t(np.full((2, 2), 255, np.uint8)).tolist()
    [[[1.0, 1.0], [1.0, 1.0]]]
    """

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for i, t in enumerate(self.transforms):
            if not callable(t):
                raise TypeError(f"Compose: transforms[{i}] is a {type(t).__name__}, not a transform or function")

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def apply(self, a):
        for t in self.transforms:
            a = t.apply(a) if isinstance(t, Transform) else _unwrap(t(a))[0]
        return a

    def apply_batch(self, a):
        for t in self.transforms:
            a = _apply_batch(t, a)
        return a

    def batch(self, x):
        a, was_tensor = _unwrap(x)
        made_tensor = any(isinstance(t, ToTensor) for t in self.transforms)
        return _wrap(self.apply_batch(a), was_tensor or made_tensor)

    def __repr__(self):
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


class Lambda(Transform):
    """A function of one sample as a transform (run sample by sample on a batch, unless ``batched``
    says the function takes whole batches)."""

    def __init__(self, fn, batched=False):
        if not callable(fn):
            raise TypeError(f"Lambda: expected a function, got {type(fn).__name__}")
        self.fn, self.batched = fn, bool(batched)

    def apply(self, a):
        return _unwrap(self.fn(a[None]))[0][0] if self.batched else _unwrap(self.fn(a))[0]

    def apply_batch(self, a):
        if self.batched:
            return _unwrap(self.fn(a))[0]
        return backend.array_module(a).stack([_unwrap(self.fn(s))[0] for s in a])


class ToTensor(Transform):
    """An (H, W) or (H, W, C) image (or an (N, H, W) / (N, H, W, C) batch) as a float32 (C, H, W)
    Tensor; uint8 values are scaled to [0, 1] (divided by 255), other values are kept.

    >>> ToTensor()(np.array([[0, 255]], np.uint8))
    tensor([[[0., 1.]]])
    >>> ToTensor().batch(np.zeros((5, 8, 8, 3))).shape
    (5, 3, 8, 8)
    """

    def __call__(self, x):
        return Tensor(self.apply(_unwrap(x)[0]))

    def batch(self, x):
        return Tensor(self.apply_batch(_unwrap(x)[0]))

    def apply(self, a):
        if a.ndim not in (2, 3):
            raise ValueError(f"ToTensor: expected an (H, W) or (H, W, C) image, got shape {tuple(a.shape)}")
        return self._convert(a[None])[0]

    def apply_batch(self, a):
        if a.ndim not in (3, 4):
            raise ValueError(f"ToTensor: expected an (N, H, W) or (N, H, W, C) batch, got shape {tuple(a.shape)}")
        return self._convert(a)

    @staticmethod
    def _convert(a):
        xp = backend.array_module(a)
        a = a[:, None] if a.ndim == 3 else a.transpose(0, 3, 1, 2)
        if a.dtype == np.uint8:
            return xp.multiply(a, np.float32(1 / 255), dtype=np.float32)
        if a.dtype.kind not in "fiub":
            raise TypeError(f"ToTensor: expected numeric pixels, got dtype {a.dtype}")
        return xp.ascontiguousarray(a, dtype=np.float32 if a.dtype != np.float16 else a.dtype)


class Normalize(Transform):
    """``(x - mean[c]) / std[c]`` per channel of (C, H, W) images (float32 out).

    >>> Normalize(mean=[1.0, 2.0], std=[2.0, 4.0])(np.ones((2, 1, 1), np.float32)).ravel().tolist()
    [0.0, -0.25]
    """

    def __init__(self, mean, std, inplace=False):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1)
        if self.mean.size == 0 or self.std.size == 0:
            raise ValueError("Normalize: mean and std need at least one value (one per channel)")
        if not np.all(self.std > 0) or not np.all(np.isfinite(self.std)):
            raise ValueError(f"Normalize: std must be positive and finite, got {self.std.tolist()}")
        self.inplace = bool(inplace)

    def apply(self, a):
        _image("Normalize", a, batched=False)
        return self._normalize(a)

    def apply_batch(self, a):
        _image("Normalize", a, batched=True)
        return self._normalize(a)

    def _normalize(self, a):
        c = a.shape[-3]
        if self.mean.size not in (1, c) or self.std.size not in (1, c):
            raise ValueError(f"Normalize: mean {self.mean.tolist()} and std {self.std.tolist()} must have one value "
                             f"or one per channel; the input has {c} channels (shape {tuple(a.shape)})")
        xp = backend.array_module(a)
        mean = xp.asarray(self.mean)[:, None, None]
        scale = xp.asarray(1 / self.std)[:, None, None]
        if self.inplace and a.dtype == np.float32 and a.flags.writeable:
            a -= mean
            a *= scale
            return a
        return ((a.astype(np.float32, copy=False) - mean) * scale).astype(np.float32, copy=False)

    def extra_repr(self):
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"


def _pair(op, name, v):
    if isinstance(v, numbers.Integral):
        return int(v), int(v)
    t = tuple(int(e) for e in v)
    if len(t) == 1:
        return t * 2
    if len(t) != 2:
        raise ValueError(f"{op}: {name} must be an int or a pair (h, w), got {v!r}")
    return t


def _padding4(padding):
    """torchvision's padding: int (all sides), (left/right, top/bottom) or (left, top, right, bottom);
    returned as (top, bottom, left, right)."""
    if padding is None:
        return 0, 0, 0, 0
    if isinstance(padding, numbers.Integral):
        p = int(padding)
        return p, p, p, p
    p = tuple(int(e) for e in padding)
    if len(p) == 1:
        return p * 4
    if len(p) == 2:
        return p[1], p[1], p[0], p[0]
    if len(p) == 4:
        return p[1], p[3], p[0], p[2]
    raise ValueError(f"RandomCrop: padding must be an int or a sequence of 1, 2 or 4 ints, got {padding!r}")


_PAD_MODES = {"constant": "constant", "edge": "edge", "reflect": "reflect", "symmetric": "symmetric"}


class RandomCrop(Transform):
    """Crop a random ``size`` (h, w) window, after padding the image by ``padding`` (torchvision's
    meaning: an int, (left/right, top/bottom) or (left, top, right, bottom)) with ``fill`` or by
    ``padding_mode`` ``"edge"``, ``"reflect"`` or ``"symmetric"``. Each image of a batch gets its
    own window; the batch is cropped with one gather from a strided view of all windows.

    >>> x = np.arange(16.0).reshape(1, 4, 4)
    >>> RandomCrop(4, padding=1, seed=0)(x).shape
    (1, 4, 4)
    """

    def __init__(self, size, padding=None, pad_if_needed=False, fill=0, padding_mode="constant", generator=None,
                 seed=None):
        self.size = _pair("RandomCrop", "size", size)
        if min(self.size) < 1:
            raise ValueError(f"RandomCrop: size must be positive, got {self.size}")
        self.padding = _padding4(padding)
        if min(self.padding) < 0:
            raise ValueError(f"RandomCrop: padding must be non-negative, got {padding!r}")
        if padding_mode not in _PAD_MODES:
            raise ValueError(f"RandomCrop: padding_mode must be one of {sorted(_PAD_MODES)}, got {padding_mode!r}")
        self.pad_if_needed, self.fill, self.padding_mode = bool(pad_if_needed), fill, padding_mode
        self.generator = _new_generator(generator, seed, "RandomCrop")

    def apply(self, a):
        _image("RandomCrop", a, batched=False)
        return self.apply_batch(a[None])[0]

    def apply_batch(self, a):
        _image("RandomCrop", a, batched=True)
        xp = backend.array_module(a)
        (h, w), (pt, pb, pl, pr) = self.size, self.padding
        if self.pad_if_needed:  # pad the short sides up to the crop size, as torchvision does
            extra_h = max(0, h - (a.shape[2] + pt + pb))
            extra_w = max(0, w - (a.shape[3] + pl + pr))
            pt, pb, pl, pr = pt + extra_h, pb + extra_h, pl + extra_w, pr + extra_w
        if pt or pb or pl or pr:
            kw = {"constant_values": self.fill} if self.padding_mode == "constant" else {}
            a = xp.pad(a, ((0, 0), (0, 0), (pt, pb), (pl, pr)), mode=_PAD_MODES[self.padding_mode], **kw)
        n, _, hp, wp = a.shape
        if h > hp or w > wp:
            raise ValueError(f"RandomCrop: crop size {(h, w)} is larger than the padded image {(hp, wp)} "
                             f"(padding {self.padding}); use a smaller size, more padding, or pad_if_needed=True")
        top = self.generator.integers(0, hp - h + 1, size=n)
        left = self.generator.integers(0, wp - w + 1, size=n)
        # windows[n, c, i, j] is the (h, w) crop whose top-left corner is (i, j): a view, no copy
        windows = xp.lib.stride_tricks.sliding_window_view(a, (h, w), axis=(2, 3))
        return windows[xp.arange(n), :, xp.asarray(top), xp.asarray(left)]  # (N, C, h, w), one copy

    def extra_repr(self):
        return f"size={self.size}, padding={self.padding}"


class _RandomFlip(Transform):
    _axis = -1

    def __init__(self, p=0.5, generator=None, seed=None):
        name = type(self).__name__
        if not 0 <= p <= 1:
            raise ValueError(f"{name}: p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)
        self.generator = _new_generator(generator, seed, name)

    def apply(self, a):
        _image(type(self).__name__, a, batched=False)
        return self.apply_batch(a[None])[0]

    def apply_batch(self, a):
        _image(type(self).__name__, a, batched=True)
        flip = self.generator.random(a.shape[0]) < self.p
        out = a.copy()
        if flip.any():
            idx = backend.array_module(a).asarray(np.flatnonzero(flip))
            out[idx] = a[idx][..., ::-1] if self._axis == -1 else a[idx][..., ::-1, :]
        return out

    def extra_repr(self):
        return f"p={self.p}"


class RandomHorizontalFlip(_RandomFlip):
    """Mirror each image left-right (the W axis) with probability ``p``.

    >>> RandomHorizontalFlip(p=1.0)(np.array([[[1, 2, 3]]])).tolist()
    [[[3, 2, 1]]]
    """
    _axis = -1


class RandomVerticalFlip(_RandomFlip):
    """Mirror each image top-bottom (the H axis) with probability ``p``."""
    _axis = -2


class TransformDataset(Dataset):
    """``dataset`` with ``transform`` applied to each sample's input (the first item of a tuple sample,
    or the whole sample) and ``target_transform`` to its target (the last item).

    When the dataset can fetch a whole batch (a ``TensorDataset``, a ``Subset`` of one, or anything
    with ``get_batch``), so can this one, and the transforms run on the batch in a few array calls.

    >>> import tidu as td
    >>> ds = TransformDataset(td.data.TensorDataset(np.zeros((3, 1, 2, 2)), np.arange(3)), Normalize([1.0], [2.0]))
    >>> x, y = ds[1]; x.shape, x.numpy().ravel().tolist(), y.item()
    ((1, 2, 2), [-0.5, -0.5, -0.5, -0.5], 1)
    """

    def __init__(self, dataset, transform=None, target_transform=None):
        if transform is not None and not callable(transform):
            raise TypeError(f"TransformDataset: transform must be callable, got {type(transform).__name__}")
        if target_transform is not None and not callable(target_transform):
            raise TypeError("TransformDataset: target_transform must be callable, "
                            f"got {type(target_transform).__name__}")
        self.dataset, self.transform, self.target_transform = dataset, transform, target_transform

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        sample = self.dataset[index]
        if not isinstance(sample, (tuple, list)):
            return self.transform(sample) if self.transform is not None else sample
        sample = list(sample)
        if self.transform is not None:
            sample[0] = self.transform(sample[0])
        if self.target_transform is not None and len(sample) > 1:
            sample[-1] = self.target_transform(sample[-1])
        return tuple(sample)

    @property
    def get_batch(self):
        """``get_batch(indices)`` when the wrapped dataset has a batched fast path, else None (the
        loader then reads sample by sample)."""
        from .loader import _batch_getter
        inner = _batch_getter(self.dataset)
        if inner is None:
            return None

        def get_batch(indices):
            batch = inner(indices)
            if not isinstance(batch, (tuple, list)):
                return self._on_batch(self.transform, batch)
            batch = list(batch)
            batch[0] = self._on_batch(self.transform, batch[0])
            if len(batch) > 1:
                batch[-1] = self._on_batch(self.target_transform, batch[-1])
            return tuple(batch)
        return get_batch

    @staticmethod
    def _on_batch(t, x):
        if t is None:
            return x
        a, _ = _unwrap(x)
        return Tensor(_apply_batch(t, a))  # the loader's batches are Tensors

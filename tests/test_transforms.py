"""tidu.data.transforms: conversion, normalization, random crops and flips on samples and batches, their
determinism under a seed, and their use through TransformDataset inside a DataLoader."""
import numpy as np
import pytest

import tidu as td
from tidu.data import DataLoader, Dataset, Subset, TensorDataset
from tidu.data.transforms import (Compose, Lambda, Normalize, RandomCrop, RandomHorizontalFlip, RandomVerticalFlip,
                                  ToTensor, TransformDataset)


def images(n=5, c=2, h=4, w=5):
    return np.arange(n * c * h * w, dtype=np.float32).reshape(n, c, h, w)


# --- ToTensor ---

def test_to_tensor_layouts_and_scaling():
    gray = np.array([[0, 51], [102, 255]], np.uint8)
    t = ToTensor()(gray)
    assert isinstance(t, td.Tensor) and t.shape == (1, 2, 2) and t.dtype == np.float32
    np.testing.assert_allclose(t.numpy()[0], gray / 255, rtol=1e-6)
    rgb = np.random.default_rng(0).integers(0, 256, (3, 4, 3)).astype(np.uint8)  # (H, W, C)
    t = ToTensor()(rgb)
    assert t.shape == (3, 3, 4)
    np.testing.assert_allclose(t.numpy(), rgb.transpose(2, 0, 1) / 255, rtol=1e-6)
    f = np.full((2, 3), 16.0)  # floats keep their values (as torchvision), cast to float32
    assert ToTensor()(f).numpy().tolist() == [[[16.0] * 3] * 2] and ToTensor()(f).dtype == np.float32
    batch = ToTensor().batch(np.zeros((6, 8, 8, 3), np.uint8))
    assert batch.shape == (6, 3, 8, 8) and batch.dtype == np.float32
    assert ToTensor().batch(np.zeros((6, 8, 8))).shape == (6, 1, 8, 8)


def test_to_tensor_errors():
    with pytest.raises(ValueError, match=r"ToTensor: expected an \(H, W\) or \(H, W, C\) image, got shape \(4,\)"):
        ToTensor()(np.zeros(4))
    with pytest.raises(ValueError, match=r"ToTensor: expected an \(N, H, W\).*got shape \(2, 2\)"):
        ToTensor().batch(np.zeros((2, 2)))


# --- Normalize ---

def test_normalize_values_per_channel():
    x = images(n=3, c=2)
    mean, std = [1.0, 10.0], [2.0, 4.0]
    out = Normalize(mean, std).batch(x)
    expected = (x - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.dtype == np.float32 and isinstance(out, np.ndarray)
    one = Normalize(mean, std)(td.tensor(x[1]))  # a Tensor in, a Tensor out; one sample = the batch's row
    assert isinstance(one, td.Tensor)
    np.testing.assert_allclose(one.numpy(), expected[1], rtol=1e-6)
    np.testing.assert_allclose(Normalize([1.0], [2.0]).batch(x), (x - 1) / 2, rtol=1e-6)  # one value for all
    u8 = Normalize([0.0], [1.0])(np.ones((1, 2, 2), np.uint8))
    assert u8.dtype == np.float32


def test_normalize_inplace_writes_into_the_input():
    x = images(n=2, c=1)
    out = Normalize([1.0], [2.0], inplace=True).batch(x)
    assert out is x and x[0, 0, 0, 0] == -0.5


def test_normalize_errors():
    with pytest.raises(ValueError, match=r"std must be positive.*\[1.0, 0.0\]"):
        Normalize([0.0, 0.0], [1.0, 0.0])
    with pytest.raises(ValueError, match=r"Normalize: mean \[0.0, 0.0, 0.0\].*input has 2 channels"):
        Normalize([0.0] * 3, [1.0] * 3)(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"Normalize: expected a \(C, H, W\) image, got shape \(4, 4\); convert"):
        Normalize([0.0], [1.0])(np.zeros((4, 4)))


# --- RandomCrop ---

def reference_crops(x, size, pad, seed, mode="constant", fill=0):
    """Crop every image with a loop, drawing the corners as RandomCrop does (top for all, then left)."""
    (h, w), (pt, pb, pl, pr) = size, pad
    kw = {"constant_values": fill} if mode == "constant" else {}
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), mode=mode, **kw)
    rng = np.random.default_rng(seed)
    top = rng.integers(0, xp.shape[2] - h + 1, size=len(x))
    left = rng.integers(0, xp.shape[3] - w + 1, size=len(x))
    return np.stack([xp[i, :, t:t + h, l:l + w] for i, (t, l) in enumerate(zip(top, left))])


@pytest.mark.parametrize("size,padding,pad4,mode", [
    (4, 1, (1, 1, 1, 1), "constant"),
    ((3, 2), None, (0, 0, 0, 0), "constant"),
    ((4, 5), (2, 1), (1, 1, 2, 2), "reflect"),          # (left/right, top/bottom)
    ((5, 5), (1, 2, 0, 1), (2, 1, 1, 0), "edge"),        # (left, top, right, bottom)
])
def test_random_crop_matches_a_loop(size, padding, pad4, mode):
    x = images(n=7, h=4, w=5)
    out = RandomCrop(size, padding=padding, padding_mode=mode, fill=-1, seed=3).batch(x)
    hw = (size, size) if isinstance(size, int) else size
    assert out.shape == (7, 2) + hw and out.dtype == np.float32
    np.testing.assert_array_equal(out, reference_crops(x, hw, pad4, seed=3, mode=mode, fill=-1))


def test_random_crop_on_a_small_known_image():
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3)
    assert RandomCrop(3, seed=0)(x).tolist() == x.tolist()  # the full size without padding: the image itself
    seen = {tuple(RandomCrop(2, seed=s)(x).ravel().tolist()) for s in range(40)}
    assert seen == {(0, 1, 3, 4), (1, 2, 4, 5), (3, 4, 6, 7), (4, 5, 7, 8)}  # each of the four 2×2 windows
    padded = {tuple(RandomCrop(3, padding=1, seed=s)(x).ravel().tolist()) for s in range(200)}
    assert len(padded) == 9 and (0, 0, 0, 0, 0, 1, 0, 3, 4) in padded  # the top-left shift: zeros come in


def test_random_crop_pad_if_needed_and_errors():
    x = images(n=2, h=4, w=5)
    assert RandomCrop(6, pad_if_needed=True, seed=0).batch(x).shape == (2, 2, 6, 6)
    with pytest.raises(ValueError, match=r"RandomCrop: crop size \(6, 6\) is larger than the padded image \(4, 5\)"):
        RandomCrop(6, seed=0).batch(x)
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        RandomCrop(2, padding_mode="wrap")
    with pytest.raises(ValueError, match=r"RandomCrop: expected an \(N, C, H, W\) batch, got shape \(4, 5\)"):
        RandomCrop(2).batch(x[0, 0])


# --- flips ---

def test_flips_on_a_known_array():
    x = np.arange(6).reshape(1, 2, 3)
    assert RandomHorizontalFlip(p=1.0)(x).tolist() == [[[2, 1, 0], [5, 4, 3]]]
    assert RandomVerticalFlip(p=1.0)(x).tolist() == [[[3, 4, 5], [0, 1, 2]]]
    assert RandomHorizontalFlip(p=0.0)(x).tolist() == x.tolist()


def test_flip_batch_flips_the_drawn_images_only():
    x = images(n=50)
    out = RandomHorizontalFlip(p=0.5, seed=1).batch(x)
    flipped = np.random.default_rng(1).random(50) < 0.5
    assert 10 < flipped.sum() < 40
    np.testing.assert_array_equal(out[flipped], x[flipped][..., ::-1])
    np.testing.assert_array_equal(out[~flipped], x[~flipped])
    assert x[0, 0, 0, 0] == 0  # the input is not modified
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\], got 1.5"):
        RandomHorizontalFlip(p=1.5)


# --- determinism ---

def test_seeded_transforms_repeat():
    x = images(n=16)

    def augment(**kw):
        return Compose([RandomCrop(4, padding=2, **kw), RandomHorizontalFlip(**kw)])

    a, b = augment(seed=5).batch(x), augment(seed=5).batch(x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, augment(seed=6).batch(x))
    td.manual_seed(0)
    c = augment().batch(x)  # generators seeded from tidu's global RNG when the transforms are made
    td.manual_seed(0)
    np.testing.assert_array_equal(c, augment().batch(x))
    t = RandomCrop(3, padding=1, seed=0)
    assert not np.array_equal(t.batch(x), t.batch(x))  # a new draw on every call


# --- Compose, Lambda ---

def test_compose_with_functions_and_lambda():
    x = images(n=3)
    t = Compose([lambda s: s * 2, Lambda(lambda s: s + 1), Normalize([1.0], [2.0])])
    np.testing.assert_allclose(t.batch(x), (x * 2 + 1 - 1) / 2)
    np.testing.assert_allclose(t(x[0]), (x[0] * 2 + 1 - 1) / 2)
    whole = Lambda(lambda b: b[:, :, ::-1], batched=True)
    np.testing.assert_array_equal(whole.batch(x), x[:, :, ::-1])
    np.testing.assert_array_equal(whole(x[1]), x[1][:, ::-1])
    assert "Normalize(mean=[1.0], std=[2.0])" in repr(t)
    with pytest.raises(TypeError, match=r"Compose: transforms\[1\] is a int"):
        Compose([ToTensor(), 3])


def test_compose_to_tensor_pipeline():
    raw = np.random.default_rng(0).integers(0, 256, (4, 8, 8)).astype(np.uint8)  # (N, H, W) grayscale
    t = Compose([ToTensor(), Normalize([0.5], [0.25])])
    batch = t.batch(raw)
    assert isinstance(batch, td.Tensor) and batch.shape == (4, 1, 8, 8)
    np.testing.assert_allclose(batch.numpy(), (raw[:, None] / 255 - 0.5) / 0.25, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t(raw[2]).numpy(), batch.numpy()[2], rtol=1e-6)


# --- in a DataLoader ---

def test_transform_dataset_in_a_loader_takes_the_batched_path():
    x, y = images(n=10), np.arange(10)
    calls = []

    class Counting(Normalize):
        def apply_batch(self, a):
            calls.append(len(a))
            return super().apply_batch(a)

    ds = TransformDataset(TensorDataset(x, y), Counting([1.0], [2.0]), target_transform=lambda t: t * 10)
    assert ds.get_batch is not None and len(ds) == 10
    loader = DataLoader(ds, batch_size=4, shuffle=True, seed=0)
    seen = []
    for xb, yb in loader:
        assert isinstance(xb, td.Tensor) and xb.dtype == np.float32 and xb.shape[1:] == (2, 4, 5)
        np.testing.assert_allclose(xb.numpy(), (x[yb.numpy() // 10] - 1) / 2)
        seen += (yb.numpy() // 10).tolist()
    assert sorted(seen) == list(range(10)) and calls == [4, 4, 2]  # one call per batch
    x0, y0 = ds[3]  # one sample: the same transform
    np.testing.assert_allclose(x0.numpy(), (x[3] - 1) / 2)
    assert y0.item() == 30


def test_transform_dataset_augments_every_epoch_and_repeats_under_a_seed():
    x, y = images(n=8, h=6, w=6), np.arange(8)

    def epochs(seed):
        td.manual_seed(seed)
        ds = TransformDataset(Subset(TensorDataset(x, y), np.arange(8)),
                              Compose([RandomCrop(6, padding=2), RandomHorizontalFlip()]))
        loader = DataLoader(ds, batch_size=8, shuffle=True, prefetch=2)
        return [xb.numpy()[np.argsort(yb.numpy())] for _ in range(2) for xb, yb in loader]

    a, b = epochs(0), epochs(0)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], a[1])  # a new augmentation each epoch


def test_transform_dataset_without_a_batched_path():
    class Plain(Dataset):  # no get_batch: the loader reads sample by sample
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return np.full((1, 2, 2), float(i), np.float32), i

    ds = TransformDataset(Plain(), RandomHorizontalFlip(p=1.0, seed=0))
    assert ds.get_batch is None
    (xb, yb), = list(DataLoader(ds, batch_size=3))
    assert xb.shape == (3, 1, 2, 2) and yb.tolist() == [0, 1, 2]
    with pytest.raises(TypeError, match="TransformDataset: transform must be callable"):
        TransformDataset(Plain(), transform=3)

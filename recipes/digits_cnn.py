"""A small CNN on scikit-learn's 8×8 handwritten digits, trained with the Trainer, with augmentation.

    python recipes/digits_cnn.py --out runs/digits_cnn            # 40 epochs, about a minute on one core
    python recipes/digits_cnn.py --out runs/digits_cnn --epochs 5 # a quick look

The 1,797 images (X is (n, 64), pixel values 0..16) become (n, 1, 8, 8) images in [0, 1], split once
by class into train / validation / test = 70 / 10 / 20 % (``stratified_split``, seed 0: 1,258 / 180 /
359 images), so every run is scored on the same 359 held-out test images. The training images are
shifted by up to one pixel (``RandomCrop(8, padding=1)``) and all are normalized with the training
pixels' mean and std. The network: three 3×3 convolutions with batch norm and ReLU, two 2×2 max-pools,
dropout and a linear layer (30,890 parameters); AdamW with a cosine learning-rate schedule.

RUN_DIR gets what every Trainer run folder has (``checkpoints/last|best.safetensors``, ``metrics.csv``,
``history.json``, ``plots/*.png``), plus ``misclassified.png`` (the test images the final model gets
wrong, with predicted and true labels) and ``results.json`` (test accuracy, the split, the seeds).
"""
import argparse
import os
import sys
import time

import numpy as np

import tidu as td
import tidu.nn as nn
from tidu.data import DataLoader, TensorDataset, load, stratified_split
from tidu.data.transforms import Compose, Normalize, RandomCrop, TransformDataset
from tidu.io import atomic_write, write_json
from tidu.train import Trainer

SPLIT = (0.7, 0.1, 0.2)  # train, validation, test
SPLIT_SEED = 0
EPOCHS = 40


def make_model(nn=nn):
    """The CNN, written once for ``tidu.nn`` and ``torch.nn`` (the same state_dict keys and shapes)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2),                                                   # 8×8 -> 4×4
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(2),                                                   # 4×4 -> 2×2
        nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 2 * 2, 10))


def prepare(split_seed=SPLIT_SEED):
    """Images in [0, 1] as (n, 1, 8, 8) float32, labels, and the train / val / test index arrays."""
    data = load("digits")
    images = (data.X / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    parts = stratified_split(data.y, fractions=SPLIT, seed=split_seed)
    return images, data.y, parts


def save_misclassified(images, true, pred, path, columns=8):
    """A PNG grid of the images with their predicted and true labels (needs matplotlib)."""
    from matplotlib.figure import Figure
    n = len(images)
    if n == 0:
        fig = Figure(figsize=(4, 1), dpi=100, layout="constrained")
        fig.text(0.5, 0.5, "No misclassified test images", ha="center", va="center", fontsize=12)
    else:
        rows, cols = -(-n // columns), min(columns, n)
        fig = Figure(figsize=(1.3 * cols + 0.4, 1.5 * rows + 0.4), dpi=100, layout="constrained")
        fig.suptitle(f"{n} misclassified test image{'s' if n != 1 else ''} (predicted / true)")
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(images[i].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{pred[i]} / {true[i]}", fontsize=10, color="crimson")
        ax.set_xticks([])
        ax.set_yticks([])
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


def run(out, epochs=EPOCHS, seed=0, split_seed=SPLIT_SEED, batch_size=64, lr=3e-3, augment=True, progress="auto"):
    """Train on the training split, score the final model on the test split; returns the results dict."""
    t0 = time.perf_counter()
    images, labels, (train, val, test) = prepare(split_seed)
    mean, std = float(images[train].mean()), float(images[train].std())
    normalize = Normalize([mean], [std])
    td.manual_seed(seed)  # the weights, the batch order, the crops and dropout all follow from it
    train_tf = Compose([RandomCrop(8, padding=1), normalize]) if augment else normalize

    def loader(idx, tf, shuffle):
        return DataLoader(TransformDataset(TensorDataset(images[idx], labels[idx]), tf),
                          batch_size=batch_size if shuffle else 512, shuffle=shuffle)

    model = make_model()
    opt = td.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = td.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    config = {"recipe": "digits_cnn", "epochs": epochs, "seed": seed, "split": list(SPLIT), "split_seed": split_seed,
              "batch_size": batch_size, "lr": lr, "augment": augment, "normalize": [mean, std]}
    trainer = Trainer(model, loss="cross_entropy", optimizer=opt, scheduler=sched, metrics=["accuracy"],
                      run_dir=out, progress=progress, config=config)
    trainer.fit(loader(train, train_tf, True), val_data=loader(val, normalize, False), epochs=epochs)

    test_loader = loader(test, normalize, False)
    scores = trainer.evaluate(test_loader)
    pred = trainer.predict_classes(test_loader)
    wrong = np.flatnonzero(pred != labels[test])
    save_misclassified(images[test][wrong], labels[test][wrong], pred[wrong], os.path.join(out, "misclassified.png"))
    results = {**config, "test_accuracy": float(scores["accuracy"]), "test_loss": float(scores["loss"]),
               "val_accuracy": float(trainer.history.history["val_accuracy"][-1]) if epochs else None,
               "n_train": len(train), "n_val": len(val), "n_test": len(test), "misclassified": int(len(wrong)),
               "seconds": time.perf_counter() - t0}
    write_json(results, os.path.join(out, "results.json"))
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/digits_cnn", help="the run folder (default: runs/digits_cnn)")
    p.add_argument("--epochs", type=int, default=EPOCHS, help=f"training epochs (default: {EPOCHS})")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, batch order and augmentation")
    p.add_argument("--no-augment", action="store_true", help="train without the random one-pixel shifts")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    a = p.parse_args(argv)
    r = run(a.out, epochs=a.epochs, seed=a.seed, augment=not a.no_augment, progress=False if a.quiet else "auto")
    print(f"test accuracy {r['test_accuracy']:.4f} ({r['n_test'] - r['misclassified']}/{r['n_test']}), "
          f"validation {r['val_accuracy']:.4f}, {r['seconds']:.1f} s; "
          f"misclassified images: {os.path.join(a.out, 'misclassified.png')}")
    return r


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

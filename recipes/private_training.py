"""Train the breast_cancer and digits classifiers with differential privacy and report accuracy against ε.

    python recipes/private_training.py            # the full table (a minute or two on a laptop)
    python recipes/private_training.py --quick    # one seed, fewer budgets (a few seconds)

For each dataset: a non-private model (ordinary SGD on shuffled batches), then DP-SGD at a few privacy
budgets ε (δ = 1e-5): ``tidu.privacy.make_private`` chooses the noise multiplier σ that spends exactly
the budget over the planned epochs, clips every sample's gradient to norm C, adds N(0, σ²C²) noise to
the sum and samples batches by Poisson sampling. The loop below is the ordinary training loop: only
``make_private`` and the empty-batch line are DP-specific. Test accuracy is the mean over seeds.
"""
import argparse

import numpy as np

import tidu as td
import tidu.nn as nn
import tidu.nn.functional as F
from tidu.data import DataLoader, TensorDataset, load, stratified_split
from tidu.privacy import make_private

DELTA = 1e-5
SETTINGS = {  # hidden units, epochs, expected batch size, learning rate (SGD, momentum 0.9), clip norm C
    "breast_cancer": dict(hidden=16, epochs=20, batch_size=32, lr=0.05, max_grad_norm=1.0),
    "digits": dict(hidden=32, epochs=30, batch_size=64, lr=0.1, max_grad_norm=1.0),
}


def prepare(name, seed):
    data = load(name)
    train, test = stratified_split(data.y, fractions=(0.8, 0.2), seed=seed)
    mean, std = data.X[train].mean(0), data.X[train].std(0) + 1e-6  # standardize with the training split only
    X = (data.X - mean) / std
    return (X[train], data.y[train]), (X[test], data.y[test]), len(data.target_names)


def accuracy(model, X, y):
    with td.no_grad():
        return float((model(td.tensor(X)).argmax(1).numpy() == y).mean())


def run(name, epsilon, seed):
    s = SETTINGS[name]
    (Xtr, ytr), (Xte, yte), classes = prepare(name, seed)
    td.manual_seed(seed)
    model = nn.Sequential(nn.Linear(Xtr.shape[1], s["hidden"]), nn.Tanh(), nn.Linear(s["hidden"], classes))
    opt = td.optim.SGD(model.parameters(), lr=s["lr"], momentum=0.9)
    loader = DataLoader(TensorDataset(Xtr, ytr), batch_size=s["batch_size"], shuffle=True, seed=seed)
    sigma = None
    if epsilon is not None:
        model, opt, loader = make_private(model, opt, loader, target_epsilon=epsilon, target_delta=DELTA,
                                          epochs=s["epochs"], max_grad_norm=s["max_grad_norm"], seed=seed)
        sigma = opt.noise_multiplier
    for _ in range(s["epochs"]):
        for xb, yb in loader:
            opt.zero_grad()
            if len(xb):  # a Poisson batch can be empty: then the step is noise alone
                F.cross_entropy(model(xb), yb).backward()
            opt.step()
    spent = None if epsilon is None else opt.epsilon(DELTA)
    return accuracy(model, Xte, yte), sigma, spent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one seed and two budgets")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    budgets = [1.0, 8.0] if args.quick else [0.5, 1.0, 3.0, 8.0]
    seeds = range(1 if args.quick else args.seeds)
    print(f"DP-SGD with tidu.privacy (RDP accountant, δ = {DELTA:g}); test accuracy, mean over {len(seeds)} "
          f"seed(s)\n")
    print("| dataset | ε | noise multiplier σ | test accuracy |")
    print("|---|---|---|---|")
    for name in SETTINGS:
        for eps in [None] + budgets:
            results = [run(name, eps, seed) for seed in seeds]
            acc = np.mean([r[0] for r in results])
            spread = f" ± {np.std([r[0] for r in results]):.3f}" if len(results) > 1 else ""
            if eps is None:
                print(f"| {name} | ∞ (not private) | 0 | {acc:.3f}{spread} |", flush=True)
            else:
                spent = max(r[2] for r in results)
                assert spent <= eps, (spent, eps)
                print(f"| {name} | {eps:g} (spent {spent:.2f}) | {results[0][1]:.2f} | {acc:.3f}{spread} |",
                      flush=True)


if __name__ == "__main__":
    main()

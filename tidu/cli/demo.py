"""``tidu demo``: the tutorial's worked example, done honestly.

Fit y = θ0 + θ1·x to X = [1, 2, 3, 4, 5], y = [2, 4, 5, 4, 5] by gradient descent on the mean squared
error with tidu's own Tensor, autodiff and optimizer, then compare with the least-squares optimum
computed in closed form. Every number printed is computed here.
"""
import numpy as np

OPTIMIZERS = ("sgd", "momentum", "adam")


def register(sub):
    p = sub.add_parser("demo", help="the tutorial's linear regression, trained by gradient descent",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    p.add_argument("--epochs", type=int, default=1000, help="full-batch gradient steps (default 1000)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                   help="sgd (plain gradient descent), momentum (SGD, momentum 0.9) or adam")
    p.add_argument("--plot", metavar="FILE.png", help="draw data, fitted line, least-squares line and loss curve "
                                                      "(needs matplotlib: pip install -e '.[plot]')")
    p.set_defaults(func=run)


def fit(lr=0.01, epochs=1000, optimizer="sgd", log=print):
    """Train θ0, θ1 from zero; return (theta0, theta1, losses). ``log`` receives the progress lines."""
    import tidu as td
    import tidu.nn.functional as F
    _check(lr, epochs)
    X = td.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    y = td.tensor([2.0, 4.0, 5.0, 4.0, 5.0])
    theta0 = td.zeros((), requires_grad=True)
    theta1 = td.zeros((), requires_grad=True)
    params = [theta0, theta1]
    opt = {"sgd": lambda: td.optim.SGD(params, lr=lr),
           "momentum": lambda: td.optim.SGD(params, lr=lr, momentum=0.9),
           "adam": lambda: td.optim.Adam(params, lr=lr)}[optimizer]()
    losses = []
    for epoch in range(epochs):
        pred = theta0 + theta1 * X            # forward pass
        loss = F.mse_loss(pred, y)            # mean squared error
        opt.zero_grad()
        loss.backward()                       # back-propagation
        opt.step()                            # gradient-descent update
        losses.append(loss.item())
        if epoch % 100 == 0:
            log(f"Epoch {epoch}: Loss = {losses[-1]:.6f}")
    return theta0.item(), theta1.item(), losses


def _check(lr, epochs):
    if epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {epochs}")
    if not lr > 0:
        raise ValueError(f"--lr must be positive, got {lr}")


def least_squares(x, y):
    """The closed-form optimum of the same problem (normal equations)."""
    A = np.stack([np.ones_like(x), x], axis=1)
    (t0, t1), *_ = np.linalg.lstsq(A, y, rcond=None)
    return float(t0), float(t1), float(np.mean((A @ [t0, t1] - y) ** 2))


def run(args):
    _check(args.lr, args.epochs)
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    y = np.array([2.0, 4.0, 5.0, 4.0, 5.0])
    print(f"Fitting y = θ0 + θ1·x to X = {x.tolist()}, y = {y.tolist()} "
          f"with {args.optimizer}, lr {args.lr}, {args.epochs} epochs, parameters from 0")
    t0, t1, losses = fit(args.lr, args.epochs, args.optimizer)
    pred = t0 + t1 * x
    final_mse = float(np.mean((pred - y) ** 2))
    print(f"Final loss after {args.epochs} epochs: {final_mse:.6f}")
    print(f"Trained model: y = {t0:.4f} + {t1:.4f}·x")
    print("Predictions:  " + ", ".join(f"x={a:g} → {p:.4f} (true {b:g})" for a, p, b in zip(x, pred, y)))
    s0, s1, best = least_squares(x, y)
    print(f"Least squares (closed form): y = {s0:.4f} + {s1:.4f}·x, MSE = {best:.6f}")
    print(f"Gradient descent is still {abs(t0 - s0):.4f} from θ0 and {abs(t1 - s1):.4f} from θ1; "
          f"its MSE is {final_mse - best:.6f} above the optimum")
    if args.plot:
        draw(args.plot, x, y, (t0, t1), (s0, s1), losses)
        print(f"Plot written to {args.plot}")
    return 0


def draw(path, x, y, fitted, optimum, losses):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install -e '.[plot]'") from None
    from ..io import atomic_write
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    grid = np.linspace(x.min() - 0.5, x.max() + 0.5, 50)
    left.scatter(x, y, color="black", zorder=3, label="data")
    left.plot(grid, fitted[0] + fitted[1] * grid, label=f"gradient descent: {fitted[0]:.3f} + {fitted[1]:.3f}·x")
    left.plot(grid, optimum[0] + optimum[1] * grid, "--", label=f"least squares: {optimum[0]:.3f} + {optimum[1]:.3f}·x")
    left.set(xlabel="x", ylabel="y", title="Linear regression")
    left.legend()
    right.plot(np.arange(len(losses)), losses)
    right.set(xlabel="epoch", ylabel="MSE", yscale="log", title="Training loss")
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)

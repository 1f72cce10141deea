"""Micro-benchmark of the fused kernels against PyTorch eager: ``python -m benchmarks.kernels``.

For each kernel (layer_norm, softmax, log_softmax, cross_entropy at the shapes of the workloads that use
them) it prints the median time of tidu and of PyTorch for the forward alone (under no_grad, as in
inference) and for forward + backward, and their ratio (tidu / torch: below 1 is faster). Both libraries
run in this one process with the same thread count (NumPy's BLAS through threadpoolctl, torch's pool
through ``torch.set_num_threads``); samples alternate between the two sides (AB, then BA), each after a
pause so that the other side's idle threads have stopped spinning, and the median over samples is
reported, which is what a shared, noisy machine allows. tidu's backward starts from the graph's entry
point with the output gradient as is (``Tensor.backward(g)`` would first copy g, which no op inside a
model pays); PyTorch's from ``y.backward(g)``.

    python -m benchmarks.kernels                  # 1 and 2 threads
    python -m benchmarks.kernels --threads 1 --samples 21 --only layer_norm
"""
import argparse
import statistics
import time

import numpy as np

# Pause before each sample, so that the other side's idle threads stop spinning: OpenBLAS's spin ~0.1 s
# after a call (see harness.GAP_S); with one thread there are none.
GAP_S = {1: 0.01}
GAP_S_THREADS = 0.12


def _specs():
    """(kernel, shape): attention-like softmax, the LayerNorms of W4/W7-sized transformers, two losses."""
    ln = [("layer_norm", (16 * 128, 256)), ("layer_norm", (32 * 128, 384)), ("layer_norm", (64, 256))]
    sm = [("softmax", (16, 4, 128, 128)), ("log_softmax", (16, 4, 128, 128))]
    ce = [("cross_entropy", (64, 10)), ("cross_entropy", (16 * 128, 65))]
    return ln + sm + ce


def _arrays(name, shape, seed=0):
    rs = np.random.default_rng(seed)
    x = rs.standard_normal(shape).astype(np.float32)
    if name == "layer_norm":
        d = shape[-1]
        w = (1 + 0.1 * rs.standard_normal(d)).astype(np.float32)
        b = (0.1 * rs.standard_normal(d)).astype(np.float32)
        return {"x": x, "w": w, "b": b, "g": rs.standard_normal(shape).astype(np.float32)}
    if name == "cross_entropy":
        return {"x": x, "t": rs.integers(0, shape[1], shape[0])}
    return {"x": x, "g": rs.standard_normal(shape).astype(np.float32)}


def _runner(side, name, arrays):
    """(forward, forward_backward) closures for one side."""
    if side == "tidu":
        import tidu as td
        from tidu.autograd import run_backward
        F, tensor, no_grad = td, td.tensor, td.no_grad
        backward = lambda y, g: run_backward([y], [g.data])  # noqa: E731
    else:
        import torch
        import torch.nn.functional as F
        tensor, no_grad = torch.from_numpy, torch.no_grad
        backward = lambda y, g: y.backward(g)  # noqa: E731
    leaves = {k: tensor(v.copy()) for k, v in arrays.items()}  # each side its own memory
    for k in ("x", "w", "b"):
        if k in leaves:
            leaves[k].requires_grad_(True)
    x, g = leaves["x"], leaves.get("g")
    if name == "layer_norm":
        call = lambda: F.layer_norm(x, (x.shape[-1],), leaves["w"], leaves["b"], 1e-5)  # noqa: E731
    elif name == "cross_entropy":
        call = lambda: F.cross_entropy(x, leaves["t"])  # noqa: E731
    else:
        op = getattr(F, name)
        call = lambda: op(x, -1)  # noqa: E731
    params = [leaves[k] for k in ("x", "w", "b") if k in leaves]

    def forward():
        with no_grad():
            call()

    def forward_backward():
        for p in params:
            p.grad = None
        y = call()
        y.backward() if g is None else backward(y, g)
    return forward, forward_backward


def _time(fn, inner):
    fn()  # settle: wake the threads, warm the caches
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def _inner_for(fn, target_s=0.02):
    """Calls per sample so that a sample lasts about ``target_s``."""
    t = _time(fn, 1)
    return max(1, min(200, int(target_s / max(t, 1e-7))))


def measure(name, shape, samples=11, threads=1, sides=("tidu", "torch")):
    """{side: {"fwd": median s, "fwd_bwd": median s}} with the sides' samples interleaved."""
    arrays = _arrays(name, shape)
    runners = {s: _runner(s, name, arrays) for s in sides}
    result = {s: {} for s in sides}
    for kind, idx in (("fwd", 0), ("fwd_bwd", 1)):
        inner = {s: _inner_for(runners[s][idx]) for s in sides}
        times = {s: [] for s in sides}
        for i in range(samples):
            order = sides if i % 2 == 0 else sides[::-1]
            for s in order:
                time.sleep(GAP_S.get(threads, GAP_S_THREADS))
                times[s].append(_time(runners[s][idx], inner[s]))
        for s in sides:
            result[s][kind] = statistics.median(times[s])
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--samples", type=int, default=11)
    p.add_argument("--only", default=None, help="run only the kernels whose name contains this")
    args = p.parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits
    for threads in args.threads:
        torch.set_num_threads(threads)
        with threadpool_limits(limits=threads):
            print(f"\n{threads} thread(s); median of {args.samples} interleaved samples; ms; ratio = tidu/torch")
            print(f"{'kernel':<14}{'shape':<20}{'fwd tidu':>10}{'torch':>9}{'ratio':>7}"
                  f"{'f+b tidu':>11}{'torch':>9}{'ratio':>7}")
            for name, shape in _specs():
                if args.only and args.only not in name:
                    continue
                r = measure(name, shape, args.samples, threads)
                t, o = r["tidu"], r["torch"]
                print(f"{name:<14}{str(shape):<20}{t['fwd'] * 1e3:>10.3f}{o['fwd'] * 1e3:>9.3f}"
                      f"{t['fwd'] / o['fwd']:>7.2f}{t['fwd_bwd'] * 1e3:>11.3f}{o['fwd_bwd'] * 1e3:>9.3f}"
                      f"{t['fwd_bwd'] / o['fwd_bwd']:>7.2f}", flush=True)


if __name__ == "__main__":
    main()

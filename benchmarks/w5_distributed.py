"""W5 over MPI — the W5 MLP (1024→4096→4096→1024, global batch 512, MSE, SGD) data-parallel on 1 and 2 ranks.

Run it as ``python -m benchmarks.w5_distributed`` (``--quick`` checks that it runs). It starts one
``mpiexec -n R`` job per configuration, each running this module with ``--worker``:

- ``1 rank × T threads``: plain W5 (no DDP), NumPy's BLAS on all T = --threads cores — the baseline;
- ``1 rank × 1 thread``: the same on one core, the per-core rate that ideal scaling multiplies;
- ``R ranks × T/R threads``: ``DistributedDataParallel``, the global batch split over the ranks
  (512 / R each), the cores split over them.

A sample is ``inner`` steps between two barriers, timed on rank 0; the table shows the median and
min–max of the per-step times, the throughput (samples of the global batch per second), the time per
step inside MPI for the gradients (``comm``: launching, progressing and waiting for the bucketed
allreduce) and the part of it spent waiting after backward had finished (``exposed``), and the time
one blocking allreduce of all the gradients takes alone.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from . import harness
from .w5_mlp_large import arrays, make_spec as w5_spec

ID = "W5-MPI"
TITLE = "W5 MLP data-parallel over MPI, global batch 512"


def make_spec(quick=False, threads=None):
    spec = w5_spec(quick)
    spec["threads"] = threads or os.cpu_count()
    spec["timing"] = {"warmup": 1 if quick else 2, "samples": 3 if quick else 10, "inner": 1 if quick else 2}
    spec["bucket_cap_mb"] = 25
    return spec


def configs(spec):
    t = spec["threads"]
    out = [{"ranks": 1, "threads": t, "ddp": False, "label": f"1 rank × {t} threads (no DDP)"}]
    if t > 1:
        out.append({"ranks": 1, "threads": 1, "ddp": False, "label": "1 rank × 1 thread (no DDP)"})
    half = max(1, t // 2)
    out.append({"ranks": 2, "threads": half, "ddp": True, "label": f"2 ranks × {half} thread{'s' * (half > 1)}, DDP"})
    return out


# --- the worker: one rank of one configuration ---

def worker(spec, cfg):
    import tidu as td
    import tidu.distributed as dist
    import tidu.nn as nn
    import tidu.nn.functional as F
    limiter = harness.set_threads("tidu", cfg["threads"])  # noqa: F841
    if cfg["ddp"]:
        dist.init_process_group()
    rank, world = dist.get_rank(), dist.get_world_size()
    x, y, sd = arrays(spec)
    per = spec["batch"] // world
    xb, yb = td.from_numpy(x[rank * per:(rank + 1) * per]), td.from_numpy(y[rank * per:(rank + 1) * per])
    s = spec["sizes"]
    model = nn.Sequential(nn.Linear(s[0], s[1]), nn.ReLU(), nn.Linear(s[1], s[2]), nn.ReLU(), nn.Linear(s[2], s[3]))
    model.load_state_dict({k: td.from_numpy(v) for k, v in sd.items()})
    net = dist.DistributedDataParallel(model, bucket_cap_mb=spec["bucket_cap_mb"]) if cfg["ddp"] else model
    opt = td.optim.SGD(net.parameters(), lr=spec["lr"])

    def step():
        loss = F.mse_loss(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    t = spec["timing"]
    for _ in range(t["warmup"]):
        step()
    if cfg["ddp"]:
        net.reset_stats()
    times = []
    for _ in range(t["samples"]):
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(t["inner"]):
            step()
        dist.barrier()
        times.append((time.perf_counter() - t0) / t["inner"])
    out = {"times": times, "loss": float(step().item()), "peak_rss_mib": harness.peak_rss_mib()}
    if cfg["ddp"]:
        n = t["samples"] * t["inner"] + 1
        st = net.stats
        out.update(comm_s=st["comm_s"] / n, wait_s=st["wait_s"] / n, bytes=st["bytes"] / n,
                   buckets=len(net._buckets))
        grads = np.concatenate([p.grad.data.ravel() for p in model.parameters()])
        comm = dist.mpi._default.comm
        reps = []
        for _ in range(3):  # one blocking allreduce of every gradient at once, for reference
            comm.Barrier()
            t0 = time.perf_counter()
            dist.all_reduce(grads)
            reps.append(time.perf_counter() - t0)
        out["allreduce_alone_s"] = min(reps)
    if rank == 0:
        print("RESULT " + json.dumps(out), flush=True)


# --- the parent: one mpiexec job per configuration, then the table ---

def run_config(spec, cfg, timeout=600):
    import tidu.distributed as dist
    mpiexec = dist.mpiexec_path()
    if mpiexec is None or not dist.is_available():
        raise RuntimeError("benchmarks.w5_distributed needs mpi4py and mpiexec: pip install 'tidu[distributed]'")
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg["threads"]))
    cmd = [mpiexec, "-n", str(cfg["ranks"]), sys.executable, "-m", "benchmarks.w5_distributed", "--worker",
           json.dumps({"spec": spec, "cfg": cfg})]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=root, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{cfg['label']}: the job failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1][len("RESULT "):])


def format_table(spec, results):
    head = ["configuration", "step median (min–max)", "samples/s", "speed-up", "comm / step",
            "exposed wait / step", "allreduce alone"]
    base = statistics.median(results[0][1]["times"])
    rows = []
    for cfg, r in results:
        med = statistics.median(r["times"])
        comm = [harness.fmt_time(r[k]) if k in r else "—" for k in ("comm_s", "wait_s", "allreduce_alone_s")]
        spread = f"{harness.fmt_time(min(r['times'])).split()[0]}–{harness.fmt_time(max(r['times']))}"
        rows.append([cfg["label"], f"{harness.fmt_time(med)} ({spread})", f"{spec['batch'] / med:.0f}",
                     f"{base / med:.2f}×", *comm])
    widths = [max(len(str(x[i])) for x in [head] + rows) for i in range(len(head))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.w5_distributed", description=TITLE)
    p.add_argument("--quick", action="store_true", help="tiny sizes (checks that it runs; not a benchmark)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="cores to use in every configuration")
    p.add_argument("--json", metavar="FILE", help="also save the results as JSON")
    p.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        job = json.loads(a.worker)
        return worker(job["spec"], job["cfg"])
    spec = make_spec(a.quick, a.threads)
    env = harness.environment(a.threads)
    print(f"{ID} {TITLE} — {env['date']} — {env['cpu']}, {env['cpus']} CPUs, "
          f"{a.threads} cores in every configuration")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if load is not None and load > 0.5 * (os.cpu_count() or 1):
        print(f"WARNING: load average {load:.1f} on {os.cpu_count()} CPUs: other work shares the cores, the times "
              "below are inflated and noisy")
    if a.quick:
        print("--quick: tiny sizes and step counts — this checks that the benchmark runs; the numbers mean nothing.")
    results = []
    for cfg in configs(spec):
        print(f"running {cfg['label']} …", flush=True)
        results.append((cfg, run_config(spec, cfg)))
    print()
    print(format_table(spec, results))
    gb = 4 * sum(i * o + o for i, o in zip(spec["sizes"][:-1], spec["sizes"][1:])) / 1e6
    ddp = [r for c, r in results if c["ddp"]]
    notes = [f"gradients: {gb:.1f} MB per step per rank (float32)"]
    if ddp:
        notes.append(f"DDP: {ddp[0]['buckets']} buckets of ≤ {spec['bucket_cap_mb']} MiB; 'comm' is the time inside "
                     "MPI calls for gradients (launch, progress, wait), 'exposed' the wait after backward finished")
    if a.threads <= 2:
        notes.append("with 2 cores, 2 ranks get one core each: compute splits in half, but the allreduce and MPI's "
                     "busy polling take cycles from the same two cores, and NumPy's BLAS with 2 threads on one "
                     "process is already a strong baseline; more cores (or machines) are where ranks pay off")
    for n in notes:
        print(n)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"env": env, "load_average": load, "spec": spec,
                       "results": [{"config": c, **r} for c, r in results]}, f, indent=2)
    return results


if __name__ == "__main__":
    main()

"""The benchmark harness: tidu and PyTorch eager, side by side, in one run.

Each side of a workload runs in its own worker process (``multiprocessing``, spawn), so that

- the peak memory is honest: the peak RSS (see ``peak_rss_mib``) of a process that imported only
  its own framework (the tidu worker never imports torch), reported in total and as the growth
  over the process's high-water mark after the imports;
- the two sides never share a thread pool, yet their timings interleave: the parent asks the
  workers for one timed sample at a time, in ABAB / BABA rounds, so a burst of load on the shared
  machine hits both sides alike.

A sample is untimed steps (at least ``settle`` of them and at least ``settle_s`` seconds, see
``SETTLE_S``: the other side's idle threads stop spinning, this side's threads, caches and CPU clock
warm up), then ``inner`` timed steps; its per-step time is the elapsed time divided by ``inner``. The table
shows the median over samples and the min–max of the samples; the ratio tidu / PyTorch is the
median over rounds of the ratio of the round's two samples (``paired_ratio``).

A workload is a module with ``ID``, ``TITLE``, ``TARGET``, ``make_spec(quick)``, ``build(side, spec)``
(returning a runner with ``step()`` and ``check()``) and ``summarize(spec, sides, others)`` (``others``:
the results of the workloads already run, by id; W5 reads W6 there).
"""
import datetime
import importlib
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np

WORKLOADS = {"W1": "benchmarks.w1_tutorial", "W2": "benchmarks.w2_mlp_digits", "W3": "benchmarks.w3_cnn",
             "W4": "benchmarks.w4_gpt", "W5": "benchmarks.w5_mlp_large", "W6": "benchmarks.w6_matmul",
             "W7": "benchmarks.w7_minilm"}
SIDES = ("tidu", "torch")
SLOWING_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# Before each timed sample, a worker runs untimed steps for at least SETTLE_S seconds. An idle OpenBLAS
# keeps its worker threads spinning (with sched_yield) for ~0.1 s after a call (measured here: 20–30 ms
# of CPU burnt in the 0.2 s after a 512² matmul; PyTorch's OpenMP pool ~5 ms), CPU taken from whoever
# runs next. Waiting busy rather than asleep also means timing never starts on a CPU coming out of idle.
SETTLE_S = 0.15


def torch_available():
    import importlib.util
    return importlib.util.find_spec("torch") is not None  # without importing it here


def peak_rss_mib():
    """This process's peak resident set size in MiB.

    On Linux, VmHWM of /proc/self/status: the high-water mark of this process's own memory map.
    (``getrusage(RUSAGE_SELF).ru_maxrss`` is not used there: Linux carries it over fork and exec,
    so a worker would report at least its parent's peak.) Elsewhere, ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def blas_info():
    """NumPy's BLAS as threadpoolctl sees it (internal_api, architecture, version, threads)."""
    from threadpoolctl import threadpool_info
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    mine = [i for i in blas if "numpy" in i.get("filepath", "")] or blas
    if not mine:
        return {"internal_api": "unknown", "architecture": "unknown"}
    i = mine[0]
    return {k: i.get(k) for k in ("internal_api", "architecture", "version", "num_threads", "threading_layer",
                                  "filepath")}


def set_threads(side, threads):
    """Use ``threads`` threads: NumPy's BLAS (and OpenMP) through threadpoolctl, torch's own pool too.
    Returns the threadpoolctl limiter, which must stay alive."""
    from threadpoolctl import threadpool_limits
    if side == "torch":
        import torch
        torch.set_num_threads(threads)
    return threadpool_limits(limits=threads)


def side_info(side):
    info = {"blas": blas_info(), "numpy": np.__version__}
    if side == "torch":
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        info["torch_blas"] = "mkl" if torch.backends.mkl.is_available() else "other"
    else:
        import tidu
        info["tidu"] = tidu.__version__
    return info


def _worker(conn, module_name, side, spec, threads):
    """One side of one workload, driven by the parent over a pipe."""
    try:
        mod = importlib.import_module(module_name)
        if side == "torch":
            import torch  # noqa: F401  (imported before the limits so its OpenMP pool is covered)
        else:
            import tidu  # noqa: F401
        limiter = set_threads(side, threads)  # noqa: F841
        rss_import = peak_rss_mib()
        runner = mod.build(side, spec)
        conn.send(("ready", side_info(side)))
        while True:
            cmd, *args = conn.recv()
            if cmd == "check":
                conn.send(("ok", runner.check()))
            elif cmd == "steps":
                for _ in range(args[0]):
                    runner.step()
                conn.send(("ok", None))
            elif cmd == "sample":
                settle, settle_s, inner = args
                step = runner.step
                n, until = 0, time.perf_counter() + settle_s
                while n < settle or time.perf_counter() < until:
                    step()
                    n += 1
                t0 = time.perf_counter()
                for _ in range(inner):
                    step()
                conn.send(("ok", (time.perf_counter() - t0) / inner))
            elif cmd == "done":
                peak = peak_rss_mib()
                conn.send(("ok", {"peak_rss_mib": peak, "import_rss_mib": rss_import}))
                return
    except BaseException as e:  # report instead of dying silently
        import traceback
        conn.send(("error", f"{side}: {type(e).__name__}: {e}\n{traceback.format_exc()}"))


class _Side:
    def __init__(self, ctx, module_name, side, spec, threads):
        self.side = side
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, module_name, side, spec, threads), daemon=True)
        self.proc.start()
        child.close()
        self.info = self.recv()

    def ask(self, *cmd):
        self.conn.send(cmd)
        return self.recv()

    def recv(self):
        status, value = self.conn.recv()
        if status == "error":
            raise RuntimeError(f"benchmark worker failed: {value}")
        return value

    def close(self):
        try:
            return self.ask("done")
        finally:
            self.proc.join(timeout=30)


def run_workload(mod, spec, threads, sides=SIDES):
    """Run one workload on the given sides; return a dict of times, checks and memory per side."""
    ctx = mp.get_context("spawn")
    t = spec["timing"]
    workers = {}
    try:
        for s in sides:  # one at a time: startup (imports, weight creation) is not part of the race
            workers[s] = _Side(ctx, mod.__name__, s, spec, threads)
        checks = {s: w.ask("check") for s, w in workers.items()}
        for s, w in workers.items():
            w.ask("steps", t["warmup"])
        times = {s: [] for s in workers}
        order = list(workers)
        settle, settle_s = t.get("settle", 1), t.get("settle_s", SETTLE_S)
        for r in range(t["samples"]):
            for s in (order if r % 2 == 0 else order[::-1]):  # AB, BA, AB, …: alternate who goes first
                times[s].append(workers[s].ask("sample", settle, settle_s, t["inner"]))
        memory = {s: w.close() for s, w in workers.items()}
    finally:
        for w in workers.values():
            if w.proc.is_alive():
                w.proc.kill()
    out = {}
    for s in workers:
        ts = times[s]
        out[s] = {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts), "times_s": ts,
                  "samples": len(ts), "steps_per_sample": t["inner"], "check": checks[s], "info": workers[s].info,
                  **memory[s]}
    return out


def paired_ratio(sides):
    """tidu / PyTorch: the median over rounds of the ratio of the two samples taken back to back.

    Robust to load that changes during the run (a shared machine): each round's two samples see
    about the same load, while a plain ratio of medians can pair a loaded median with a quiet one."""
    return statistics.median(a / b for a, b in zip(sides["tidu"]["times_s"], sides["torch"]["times_s"]))


# --- presentation ---

def fmt_time(s):
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.3f} s"


def _range(r):
    return f"{fmt_time(r['median_s'])} ({fmt_time(r['min_s']).split()[0]}–{fmt_time(r['max_s'])})"


def format_table(results):
    head = ["workload", "tidu median (min–max)", "PyTorch median (min–max)", "tidu/PyTorch", "target", "met",
            "peak RSS MiB tidu", "peak RSS MiB PyTorch"]
    rows = []
    for r in results:
        sides = r["sides"]
        cell = {s: _range(sides[s]) if s in sides else "—" for s in SIDES}
        mem = {s: (f"{sides[s]['peak_rss_mib']:.0f} (+{sides[s]['peak_rss_mib'] - sides[s]['import_rss_mib']:.0f})"
                   if s in sides else "—") for s in SIDES}
        ratio = f"{r['ratio']:.2f}×" if r.get("ratio") is not None else "—"
        target = r.get("target_text", "—")
        met = {True: "yes", False: "NO", None: "—"}[r.get("met")]
        rows.append([f"{r['id']} {r['title']}", cell["tidu"], cell["torch"], ratio, target, met, mem["tidu"],
                     mem["torch"]])
    widths = [max(len(str(x[i])) for x in [head] + rows) for i in range(len(head))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in rows]
    return "\n".join(out)


def environment(threads):
    import threadpoolctl
    env = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "python": platform.python_version(), "numpy": np.__version__,
           "threadpoolctl": threadpoolctl.__version__, "threads": threads, "cpus": os.cpu_count(),
           "cpu": _cpu_name(), "platform": platform.platform(),
           "slowing_env_vars_set": [v for v in SLOWING_VARS if v in os.environ],
           "load_average_before": _loadavg()}
    try:
        import tidu
        env["tidu"] = tidu.__version__
    except ImportError:
        pass
    return env


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --- the command line ---

def parse_args(argv):
    import argparse
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="tidu vs PyTorch eager on the CPU: W1–W7 of BENCHMARKS.md. Run it as "
                    "`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks`.")
    p.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workload ids (default: all)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads on both sides (default: all cores)")
    p.add_argument("--json", metavar="FILE", help="also save the results as JSON")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes and step counts (checks that it runs; not a benchmark)")
    p.add_argument("--tidu-only", action="store_true", help="skip PyTorch (also automatic when it is not installed)")
    p.add_argument("--profile", action="store_true",
                   help="instead of the race, profile the tidu step of each selected workload with cProfile")
    a = p.parse_args(argv)
    ids = [x.strip().upper() for x in a.only.split(",") if x.strip()]
    unknown = [x for x in ids if x not in WORKLOADS]
    if unknown:
        p.error(f"--only: unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    a.ids = ids
    return a


def profile(ids, quick, threads, steps=None, top=25):
    """cProfile the tidu step of each workload, in this process; prints the top functions by own time."""
    import cProfile
    import pstats
    import tidu  # noqa: F401
    limiter = set_threads("tidu", threads)  # noqa: F841
    for wid in ids:
        mod = importlib.import_module(WORKLOADS[wid])
        spec = mod.make_spec(quick)
        runner = mod.build("tidu", spec)
        for _ in range(spec["timing"]["warmup"] + 1):
            runner.step()
        n = steps or spec["timing"]["profile_steps"]
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        for _ in range(n):
            runner.step()
        prof.disable()
        wall = time.perf_counter() - t0
        print(f"\n=== {wid} {mod.TITLE}: {n} tidu steps under cProfile, {fmt_time(wall / n)} per step "
              f"(profiler overhead included) ===")
        stats = pstats.Stats(prof).sort_stats("tottime")
        stats.print_stats(top)


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    if a.profile:
        profile(a.ids, a.quick, a.threads)
        return []
    sides = SIDES if (torch_available() and not a.tidu_only) else ("tidu",)
    env = environment(a.threads)
    print(f"tidu benchmarks — {env['date']} — {env['cpu']}, {env['cpus']} CPUs, {a.threads} threads per side")
    if env["slowing_env_vars_set"]:
        print(f"WARNING: {', '.join(env['slowing_env_vars_set'])} set: NumPy's OpenBLAS runs slower kernels. Run "
              "`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks` for numbers that match "
              "users' machines.")
    if "torch" not in sides:
        print("PyTorch is not installed (or --tidu-only): tidu side only, no ratios.")
    if a.quick:
        print("--quick: tiny sizes and step counts — this checks that the benchmarks run; the numbers mean nothing.")
    # W6 runs (and is summarized) first: W5 reports its GFLOP/s as a fraction of W6's.
    by_id = {}
    for wid in sorted(a.ids, key=lambda w: w != "W6"):
        mod = importlib.import_module(WORKLOADS[wid])
        spec = mod.make_spec(a.quick)
        if a.quick:
            spec["timing"]["settle_s"] = 0.0
        print(f"running {wid} {mod.TITLE} …", flush=True)
        t0 = time.perf_counter()
        side_results = run_workload(mod, spec, a.threads, sides)
        r = {"id": wid, "title": mod.TITLE, "sides": side_results, "wall_s": time.perf_counter() - t0,
             "spec": {k: v for k, v in spec.items() if k not in ("data", "weights", "orders")}}
        if "torch" in side_results:
            r["ratio"] = paired_ratio(side_results)
            r["ratio_of_medians"] = side_results["tidu"]["median_s"] / side_results["torch"]["median_s"]
        r.update(mod.summarize(spec, side_results, by_id))
        by_id[wid] = r
    results = [by_id[w] for w in a.ids]
    first = results[0]["sides"] if results else {}
    print()
    if "tidu" in first:
        b = first["tidu"]["info"]["blas"]
        env["numpy_blas"] = b
        print(f"NumPy {env['numpy']} BLAS: {b.get('internal_api')} {b.get('version')}, kernel (architecture) "
              f"{b.get('architecture')}, {b.get('num_threads')} threads, {b.get('threading_layer')}")
    if "torch" in first:
        ti = first["torch"]["info"]
        env["torch"] = ti["torch"]
        env["torch_blas"] = ti["torch_blas"]
        env["torch_cpu_capability"] = ti["torch_cpu_capability"]
        print(f"PyTorch {ti['torch']}: BLAS {ti['torch_blas']}, CPU capability {ti['torch_cpu_capability']}, "
              f"{ti['torch_threads']} threads")
    env["load_average_after"] = _loadavg()
    print(f"Python {env['python']}, threads per side {a.threads}; load average (1, 5, 15 min) before "
          f"{env['load_average_before']}, after {env['load_average_after']} (other work on the machine skews times)\n")
    print(format_table(results))
    print("\nMedian and min–max of per-step times over interleaved samples (tidu, PyTorch, PyTorch, tidu, …); "
          "tidu/PyTorch = median over rounds of the ratio of the round's two back-to-back samples; "
          "peak RSS = VmHWM of each side's own worker process (growth over its after-import peak in brackets).")
    for r in results:
        for note in r.get("notes", []):
            print(f"{r['id']}: {note}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"environment": env, "results": results}, f, indent=2, default=_jsonable)
        print(f"\nsaved {a.json}")
    return results


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)

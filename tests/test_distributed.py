"""tidu.distributed: the sampler and the single-process API here; DDP, SyncBatchNorm, the collectives and the
Trainer in real 2-rank jobs that this same file runs under ``mpiexec -n 2`` (``python tests/test_distributed.py
WORKER``).
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import tidu as td
import tidu.distributed as dist
import tidu.nn as nn
import tidu.nn.functional as F
from tidu.distributed import DistributedDataParallel as DDP
from tidu.distributed import DistributedSampler, SyncBatchNorm

HERE = os.path.abspath(__file__)
MPIEXEC = dist.mpiexec_path()
needs_mpi = pytest.mark.skipif(not (dist.is_available() and MPIEXEC),
                               reason="mpi4py or mpiexec missing: pip install 'tidu[distributed]' (mpi4py, mpich)")


# --- DistributedSampler (no MPI needed) ---

def shards(n, replicas, **kw):
    return [list(DistributedSampler(range(n), num_replicas=replicas, rank=r, **kw)) for r in range(replicas)]


@pytest.mark.parametrize("n,replicas", [(10, 3), (12, 3), (2, 3), (7, 2), (100, 4)])
def test_sampler_shards_are_disjoint_and_cover(n, replicas):
    parts = shards(n, replicas, seed=3)
    assert len({len(p) for p in parts}) == 1 and len(parts[0]) == -(-n // replicas)
    every = sum(parts, [])
    assert sorted(set(every)) == list(range(n))                 # covering
    assert len(every) - len(set(every)) == len(every) - n       # only the padding repeats


def test_sampler_drop_last_is_disjoint():
    parts = shards(10, 3, drop_last=True)
    every = sum(parts, [])
    assert [len(p) for p in parts] == [3, 3, 3] and len(set(every)) == 9


def test_sampler_reproducible_and_new_every_epoch():
    a, b = DistributedSampler(range(50), 2, 0, seed=7), DistributedSampler(range(50), 2, 0, seed=7)
    assert list(a) == list(b)
    second = list(a)
    assert second != list(DistributedSampler(range(50), 2, 0, seed=7))   # the next pass is the next epoch
    a.set_epoch(5)
    b.set_epoch(5)
    e5 = list(a)
    assert e5 == list(b) and e5 != second
    a.set_epoch(5)
    assert list(a) == e5                                                  # set_epoch pins the epoch
    assert list(DistributedSampler(range(50), 2, 0, seed=8)) != list(DistributedSampler(range(50), 2, 0, seed=7))


def test_sampler_state_dict_resumes_the_order():
    s = DistributedSampler(range(30), 2, 1, seed=1)
    list(s)
    state = s.state_dict()
    expected = list(s)
    s2 = DistributedSampler(range(30), 2, 1, seed=2)     # made with another seed: the saved order wins
    s2.load_state_dict(state)
    assert list(s2) == expected and s2.seed == 1


def test_sampler_matches_pytorch_without_shuffle():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: parity with PyTorch not checked")
    from torch.utils.data import DistributedSampler as TorchSampler
    for n, r, drop in [(10, 3, False), (10, 3, True), (2, 3, False), (13, 4, False), (13, 4, True)]:
        for rank in range(r):
            ours = list(DistributedSampler(range(n), r, rank, shuffle=False, drop_last=drop))
            theirs = list(TorchSampler(range(n), r, rank, shuffle=False, drop_last=drop))
            assert ours == theirs, (n, r, rank, drop)
    assert torch is not None


def test_sampler_errors():
    with pytest.raises(ValueError, match="rank should be in the interval"):
        DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas must be a positive integer"):
        DistributedSampler(range(4), num_replicas=0, rank=0)


def test_sampler_in_a_dataloader_uses_the_fast_path():
    ds = td.data.TensorDataset(np.arange(20.0), np.arange(20))
    loader = td.data.DataLoader(ds, batch_size=4, sampler=DistributedSampler(ds, 2, 1, seed=0))
    ys = [yb.tolist() for _, yb in loader]
    assert [len(y) for y in ys] == [4, 4, 2]
    assert sum(ys, []) == list(DistributedSampler(ds, 2, 1, seed=0))   # the sampler's first epoch, in order
    assert sum([yb.tolist() for _, yb in loader], []) != sum(ys, [])     # the second pass is a new epoch


# --- one process: everything works as a group of one ---

def test_single_process_api_and_ddp_passthrough():
    assert not dist.is_initialized() and dist.get_world_size() == 1 and dist.get_rank() == 0
    a = np.arange(3.0)
    assert dist.all_reduce(a, "avg") is a and dist.all_gather(a)[0].tolist() == [0, 1, 2]
    assert dist.broadcast_object({"k": 1}) == {"k": 1} and dist.all_gather_object(5) == [5]
    assert dist.all_reduce_metrics({"acc": td.tensor(0.5)}, weight=3) == {"acc": 0.5}
    model = nn.Linear(3, 1)
    ddp = DDP(model)
    ddp(td.ones(2, 3)).sum().backward()
    assert model.weight.grad.tolist() == [[2.0, 2.0, 2.0]] and not model.weight._hooks
    loader = td.data.DataLoader(td.data.TensorDataset(np.zeros(4)), batch_size=2)
    assert dist.distribute_loader(loader) is loader


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="backend 'nccl' is not supported"):
        dist.init_process_group("nccl")
    with pytest.raises(ValueError, match="unknown op 'median'"):
        dist.all_reduce(np.zeros(2), "median")
    with pytest.raises(TypeError, match="expected an nn.Module"):
        DDP(lambda x: x)
    with pytest.raises(TypeError, match="metric 'acc' must be a number"):
        dist.all_reduce_metrics({"acc": "high"})


def test_an_mpiexec_rank_that_did_not_join_is_refused(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")                 # what mpiexec -n 2 sets
    assert dist.is_launched()
    with pytest.raises(RuntimeError, match="call tidu.distributed.init_process_group"):
        DistributedSampler(range(10))
    with pytest.raises(RuntimeError, match="process group is not initialized"):
        DDP(nn.Linear(2, 2))


def test_import_tidu_does_not_import_mpi4py():
    code = "import sys, tidu, tidu.distributed; print('mpi4py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_sync_batchnorm_alone_is_batchnorm():
    td.manual_seed(0)
    bn, sbn = nn.BatchNorm1d(4), SyncBatchNorm(4)
    x = td.randn(8, 4)
    assert np.allclose(bn(x).numpy(), sbn(x).numpy()) and np.allclose(bn.running_var.numpy(), sbn.running_var.numpy())


# --- 2 ranks under mpiexec ---

def run_mpi(args, n=2, timeout=60):
    """Run this file as ``mpiexec -n n python tests/test_distributed.py *args``; (returncode, stdout, stderr, s)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.path.dirname(os.path.dirname(HERE)))
    t0 = time.perf_counter()
    proc = subprocess.Popen([MPIEXEC, "-n", str(n), sys.executable, HERE, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"mpiexec did not finish within {timeout} s (a hang):\n{out}\n{err}")
    return proc.returncode, out, err, time.perf_counter() - t0


@pytest.fixture(scope="module")
def two_ranks():
    """One 2-rank job runs every check of `worker_checks`; rank 0 prints the results as JSON."""
    rc, out, err, _ = run_mpi(["checks"])
    assert rc == 0, f"the 2-rank job failed (exit {rc}):\n{out}\n{err}"
    line = [ln for ln in out.splitlines() if ln.startswith("RESULTS ")]
    assert line, f"no results printed:\n{out}\n{err}"
    return json.loads(line[-1][len("RESULTS "):])


@needs_mpi
@pytest.mark.parametrize("model", ["mlp", "syncbn"])
def test_two_ranks_of_32_equal_one_process_of_64(two_ranks, model):
    r = two_ranks[model]
    assert r["ranks_agree"] == 0.0                      # the ranks hold identical parameters
    assert r["max_diff_vs_single"] < 1e-5, r            # and they are what one process with batch 64 gets
    assert r["buckets"] > 1                             # the test ran several buckets through Iallreduce
    assert r["steps_reduced"] == 20


@needs_mpi
def test_syncbn_running_stats_match_one_process(two_ranks):
    assert two_ranks["syncbn"]["max_buffer_diff"] < 1e-5


@needs_mpi
def test_plain_batchnorm_under_ddp_keeps_ranks_identical(two_ranks):
    r = two_ranks["plain_bn"]
    assert r["ranks_agree"] == 0.0 and r["buffers_agree"] == 0.0


@needs_mpi
def test_gradients_in_unusual_graphs(two_ranks):
    g = two_ranks["graphs"]
    assert g["tied_weight"] < 1e-6             # a weight used twice in forward
    assert g["rank_dependent_branch"] < 1e-6   # a layer only rank 1 uses: averaged with rank 0's zero
    assert g["unused_everywhere_is_none"]
    assert g["penalty_outside_forward"] < 1e-6
    assert g["no_sync_accumulation"] < 1e-6
    assert g["user_hook_sees_local_grad"]
    assert g["backward_twice"] < 1e-5          # two backward passes through one forward: both averaged
    assert g["ignored_output"]                 # an output the loss ignores: its head keeps grad None


@needs_mpi
def test_collectives(two_ranks):
    c = two_ranks["collectives"]
    assert c == {"broadcast": [5.0, 5.0], "sum": [2.0, 4.0], "avg": [0.5, 1.5], "max": [1.0, 2.0],
                 "gather": [[0.0, 0.0], [1.0, 1.0]], "object": {"from": 0}, "objects": [0, 10],
                 "metrics": {"acc": 0.75, "loss": 1.75}, "tensor_sum": [1.0], "world": 2,
                 "sampler_disjoint": True, "loader_disjoint": True, "launched": True}


@needs_mpi
@pytest.mark.parametrize("how", ["raise", "kill"])
def test_a_failing_rank_ends_the_job_promptly(tmp_path, how):
    ckpt = tmp_path / "model.safetensors"
    rc, out, err, seconds = run_mpi(["fail", how, str(ckpt)], timeout=60)
    assert rc != 0 and seconds < 15, (rc, seconds, out, err)
    if how == "raise":
        assert "rank 1 of 2 failed" in err and "RuntimeError: rank 1 fails on purpose" in err, err
    state = td.load(ckpt)                              # the checkpoint written before still loads
    assert sorted(state) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert "saved at step 3" in out


@pytest.fixture(scope="module")
def trainer_job(tmp_path_factory):
    """One 2-rank job of Trainer.fit runs (see `worker_trainer`); rank 0 prints the results as JSON."""
    root = tmp_path_factory.mktemp("trainer")
    rc, out, err, _ = run_mpi(["trainer", str(root)])
    assert rc == 0, f"the 2-rank Trainer job failed (exit {rc}):\n{out}\n{err}"
    line = [ln for ln in out.splitlines() if ln.startswith("RESULTS ")]
    assert line, f"no results printed:\n{out}\n{err}"
    return root, json.loads(line[-1][len("RESULTS "):]), out


@needs_mpi
def test_trainer_on_two_ranks_equals_one_process_with_twice_the_batch(trainer_job, tmp_path):
    root, r, _ = trainer_job
    assert r["ranks_agree"] == 0.0 and r["syncbn"]
    ref = _fit(str(tmp_path / "ref"), batch=32)          # this process: one rank, the global batch
    assert np.abs(np.array(r["weights"]) - ref["weights"]).max() < 1e-5
    for key, values in ref["history"].items():           # the logs are those of all ranks together
        if key != "lr":
            assert np.allclose(r["history"][key], values, rtol=1e-5, atol=1e-6), key
    ref = _fit(None, 16, epochs=2, accumulate_steps=3)   # gradient accumulation: local sums, one average a step
    assert np.abs(np.array(r["accumulated"]) - ref["weights"]).max() < 1e-5
    state = td.train.checkpoint.load_checkpoint(os.path.join(root, "fit", "checkpoints", "last.safetensors"))
    assert list(state["model"]) == list(ref["state_keys"]) and state["epoch"] == 3   # no "module." prefix


@needs_mpi
def test_trainer_on_two_ranks_only_rank_0_writes_and_logs(trainer_job):
    root, r, out = trainer_job
    assert r["writes"][1] == 0 and r["writes"][0] > 0, r["writes"]
    assert sorted(os.listdir(os.path.join(root, "fit"))) == ["checkpoints", "history.json", "metrics.csv",
                                                               "metrics.jsonl"]
    runs = [(1, 3), (1, 2), (1, 2), (3, 4), (1, 4)]      # fit, accumulated; stopped, resumed, uninterrupted
    assert [ln.split(" - ")[0] for ln in out.splitlines() if ln.startswith("epoch ")] == \
        [f"epoch {e}/{n}" for first, n in runs for e in range(first, n + 1)]   # one line per epoch, rank 0 only


@needs_mpi
def test_trainer_on_two_ranks_resumes_as_if_never_stopped(trainer_job):
    r = trainer_job[1]["resume"]
    assert r["resumed_from_epoch"] == 2 and r["diff"] == 0.0 and r["history_equal"], r


@needs_mpi
def test_trainer_on_two_ranks_a_failing_rank_ends_the_job(tmp_path):
    rc, out, err, seconds = run_mpi(["trainer-fail", str(tmp_path)], timeout=60)
    assert rc != 0 and seconds < 20, (rc, seconds, out, err)
    assert "rank 1 of 2 failed" in err and "RuntimeError: rank 1 fails in epoch 3" in err, err
    state = td.train.checkpoint.load_checkpoint(tmp_path / "checkpoints" / "last.safetensors")
    assert state["epoch"] == 2


@needs_mpi
def test_w5_distributed_benchmark_quick():
    rc = subprocess.run([sys.executable, "-m", "benchmarks.w5_distributed", "--quick"], capture_output=True, text=True,
                        timeout=120, cwd=os.path.dirname(os.path.dirname(HERE)),
                        env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    assert rc.returncode == 0, rc.stdout + rc.stderr
    assert "2 ranks" in rc.stdout and "comm / step" in rc.stdout


# --- the workers (run under mpiexec) ---

def _mlp():
    return nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 1))


def _bn():
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1))


def _flat(model):
    return np.concatenate([p.data.ravel() for p in model.parameters()])


def _train(model, opt, X, Y, batch, lo, hi, steps=20):
    for s in range(steps):
        xb, yb = X[s * batch:(s + 1) * batch][lo:hi], Y[s * batch:(s + 1) * batch][lo:hi]
        loss = F.mse_loss(model(td.tensor(xb)), td.tensor(yb))
        opt.zero_grad()
        loss.backward()
        opt.step()


def _parity(kind, rank, world):
    build = _mlp if kind == "mlp" else _bn
    td.manual_seed(100 + rank)                   # different weights on each rank: DDP must broadcast rank 0's
    model = build()
    if kind == "syncbn":
        model = SyncBatchNorm.convert_sync_batchnorm(model)
    ddp = DDP(model, bucket_cap_mb=2e-4)         # ~200-byte buckets: several reductions in flight
    opt = td.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    rs = np.random.default_rng(0)
    X = rs.standard_normal((20 * 64, 8)).astype(np.float32)
    Y = (np.sin(X[:, :1]) + X[:, 1:2] * 2).astype(np.float32)
    per = 64 // world
    _train(ddp, opt, X, Y, 64, rank * per, (rank + 1) * per)
    mine = _flat(model)
    every = dist.all_gather(mine)
    bufs = np.concatenate([b.data.ravel().astype(np.float64) for b in model.buffers()] or [np.zeros(0)])
    result = {"ranks_agree": float(np.abs(every[0] - every[1]).max()), "buckets": len(ddp._buckets),
              "steps_reduced": ddp.stats["steps"]}
    if kind == "plain_bn":  # each rank's statistics are its own, until the next forward starts from rank 0's
        ddp(td.tensor(X[:per]))
        bufs = np.concatenate([b.data.ravel().astype(np.float64) for b in model.buffers()])
        all_bufs = dist.all_gather(bufs)
        result["buffers_agree"] = float(np.abs(all_bufs[0] - all_bufs[1]).max())
    if rank == 0 and kind != "plain_bn":
        td.manual_seed(100)
        ref = build()
        ref_opt = td.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
        _train(ref, ref_opt, X, Y, 64, 0, 64)
        result["max_diff_vs_single"] = float(np.abs(_flat(ref) - mine).max())
        ref_bufs = np.concatenate([b.data.ravel().astype(np.float64) for b in ref.buffers()] or [np.zeros(0)])
        result["max_buffer_diff"] = float(np.abs(ref_bufs - bufs).max()) if len(bufs) else 0.0
    return result


class _Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.only_rank1 = nn.Linear(4, 4)
        self.never = nn.Linear(4, 4)

    def forward(self, x, use_branch=False):
        h = F.tanh(self.a(x))
        h = F.linear(h, self.a.weight)                 # the same weight a second time
        if use_branch:
            h = h + self.only_rank1(x)
        return h


def _graphs(rank, world):
    out = {}
    rs = np.random.default_rng(1)
    xs = [td.tensor(rs.standard_normal((6, 4)).astype(np.float32)) for _ in range(world)]
    td.manual_seed(3)

    def local_grads(model, fn):
        for p in model.parameters():
            p.grad = None
        fn().backward()
        return {n: (None if p.grad is None else p.grad.numpy().copy()) for n, p in model.named_parameters()}

    # tied weight, a branch only rank 1 takes, a layer nobody uses, a penalty outside forward
    model = _Tied()
    ddp = DDP(model)
    ref = _Tied()
    ref.load_state_dict(model.state_dict())

    def loss_of(m, r):
        return (m(xs[r], use_branch=(r == 1)) ** 2).mean()
    grads = [local_grads(ref, lambda r=r: loss_of(ref, r)) for r in range(world)]
    for p in model.parameters():
        p.grad = None
    loss = (ddp(xs[rank], use_branch=(rank == 1)) ** 2).mean()
    loss = loss + 0.01 * (model.a.bias ** 2).sum()        # a penalty computed outside forward
    loss.backward()
    avg = {n: np.mean([g[n] if g[n] is not None else np.zeros_like(p.data) for g in grads], axis=0)
           for n, p in model.named_parameters()}
    out["tied_weight"] = float(np.abs(model.a.weight.grad.numpy() - avg["a.weight"]).max())
    out["rank_dependent_branch"] = float(np.abs(model.only_rank1.weight.grad.numpy() - avg["only_rank1.weight"]).max())
    out["unused_everywhere_is_none"] = model.never.weight.grad is None
    penalty = 0.02 * model.a.bias.numpy()
    out["penalty_outside_forward"] = float(np.abs(model.a.bias.grad.numpy() - avg["a.bias"] - penalty).max())

    # no_sync: two local backward passes, then one averaged
    net = nn.Linear(4, 2)
    dnet = DDP(net)
    refnet = nn.Linear(4, 2)
    refnet.load_state_dict(net.state_dict())
    xa, xb = xs[rank], xs[rank] * 2 + 1
    seen = []
    net.weight.register_hook(lambda g: seen.append(g.numpy().copy()))   # registered after DDP: runs before it
    with dnet.no_sync():
        dnet(xa).sum().backward()
    dnet(xb).sum().backward()
    refnet.zero_grad()
    refnet(xa).sum().backward()
    refnet(xb).sum().backward()
    expected = dist.all_reduce(refnet.weight.grad.numpy().copy(), "avg")
    out["no_sync_accumulation"] = float(np.abs(net.weight.grad.numpy() - expected).max())
    local_b = td.grad(refnet(xb).sum(), [refnet.weight])[0].numpy()
    out["user_hook_sees_local_grad"] = bool(len(seen) == 2 and np.allclose(seen[1], local_b))

    # backward twice through one forward (retain_graph): both are averaged
    dnet.zero_grad()
    loss = dnet(xa).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    expected = dist.all_reduce(td.grad(refnet(xa).sum(), [refnet.weight])[0].numpy() * 2, "avg")
    out["backward_twice"] = float(np.abs(net.weight.grad.numpy() - expected).max())

    # a loss that ignores one output of forward: that head has no gradient anywhere, the other is averaged
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 1), nn.Linear(4, 1)

        def forward(self, x):
            return self.a(x), self.b(x)
    heads = DDP(TwoHeads(), bucket_cap_mb=1e-6)
    heads(xs[rank])[0].sum().backward()
    expected = dist.all_reduce(xs[rank].numpy().sum(0, keepdims=True), "avg")
    out["ignored_output"] = bool(heads.module.b.weight.grad is None and heads.module.b.bias.grad is None
                                 and np.allclose(heads.module.a.weight.grad.numpy(), expected, atol=1e-6))
    heads(xs[rank])[0].sum().backward()                # and the next step runs as usual
    out["ignored_output"] &= bool(np.allclose(heads.module.a.weight.grad.numpy(), 2 * expected, atol=1e-5))
    return out


def _collectives(rank, world):
    c = {"world": dist.get_world_size(), "launched": dist.is_launched()}
    c["broadcast"] = dist.broadcast(np.full(2, 5.0) if rank == 0 else np.zeros(2), src=0).tolist()
    c["sum"] = dist.all_reduce(np.array([rank, rank + 1.0]) if rank else np.array([1.0, 2.0]), "sum").tolist()
    c["avg"] = dist.all_reduce(np.array([rank * 1.0, rank + 1.0]), "avg").tolist()
    c["max"] = dist.all_reduce(np.array([rank * 1.0, 2.0 - rank]), "max").tolist()
    c["gather"] = [a.tolist() for a in dist.all_gather(np.full(2, float(rank)))]
    c["object"] = dist.broadcast_object({"from": rank})
    c["objects"] = dist.all_gather_object(rank * 10)
    n = 2 if rank == 0 else 6                  # weighted by the samples each rank saw
    c["metrics"] = dist.all_reduce_metrics({"acc": 0.5 if rank == 0 else 5 / 6, "loss": 1.0 + rank}, weight=n)
    c["metrics"] = {k: round(v, 6) for k, v in c["metrics"].items()}
    t = td.tensor([1.0 if rank else 0.0])
    c["tensor_sum"] = dist.all_reduce(t).tolist()
    mine = list(DistributedSampler(range(11), seed=4))
    every = dist.all_gather_object(mine)
    c["sampler_disjoint"] = len(set(every[0]) & set(every[1])) <= 1 and set(every[0]) | set(every[1]) == set(range(11))
    ds = td.data.TensorDataset(np.arange(12.0), np.arange(12))
    loader = dist.distribute_loader(td.data.DataLoader(ds, batch_size=3, shuffle=True))
    got = dist.all_gather_object(sorted(int(v) for _, yb in loader for v in yb.tolist()))
    c["loader_disjoint"] = sorted(got[0] + got[1]) == list(range(12))
    return c


def worker_checks():
    dist.init_process_group()
    rank, world = dist.get_rank(), dist.get_world_size()
    results = {kind: _parity(kind, rank, world) for kind in ("mlp", "syncbn", "plain_bn")}
    results["graphs"] = _graphs(rank, world)
    results["collectives"] = _collectives(rank, world)
    if rank == 0:
        print("RESULTS " + json.dumps(results), flush=True)


def worker_fail(how, ckpt):
    dist.init_process_group()
    rank = dist.get_rank()
    td.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    ddp = DDP(model)
    opt = td.optim.SGD(ddp.parameters(), lr=0.01)
    x, y = td.randn(16, 8), td.randn(16, 1)
    for step in range(1000):
        if step == 6 and rank == 1:
            if how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("rank 1 fails on purpose")
        loss = F.mse_loss(ddp(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == 3:
            if dist.is_main_process():
                td.save(model.state_dict(), ckpt)
                print("saved at step 3", flush=True)
            dist.barrier()
        time.sleep(0.01)


def _data():
    rs = np.random.default_rng(7)
    X = rs.standard_normal((192, 8)).astype(np.float32)
    y = (np.sin(X[:, :1]) + X[:, 1:2] - 0.5 * X[:, 2:3] ** 2).astype(np.float32)
    Xv = rs.standard_normal((51, 8)).astype(np.float32)   # odd: the ranks' validation shards differ in length
    return X, y, Xv, (np.sin(Xv[:, :1]) + Xv[:, 1:2] - 0.5 * Xv[:, 2:3] ** 2).astype(np.float32)


def _fit(run_dir, batch, epochs=3, train=None, resume=False, seed=0, callbacks=(), accumulate_steps=1):
    """Trainer.fit of a small MLP with BatchNorm (no dropout); the same call on 1 rank and on N."""
    X, y, Xv, yv = _data()
    td.manual_seed(seed)
    model = _bn()
    trainer = td.train.Trainer(model, loss="mse", optimizer=td.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                               metrics=["mae", "r2"], run_dir=run_dir, progress="lines", plots=False,
                               callbacks=list(callbacks), accumulate_steps=accumulate_steps)
    history = trainer.fit(train if train is not None else (X, y), val_data=(Xv, yv), epochs=epochs,
                          batch_size=batch, shuffle=False, resume=resume)
    return {"weights": _flat(trainer.model), "history": history.history, "trainer": trainer,
            "state_keys": list(trainer.model.state_dict())}


def worker_trainer(root):
    written = []
    real_replace = os.replace

    def replace(src, dst):                       # every file tidu writes ends with this rename
        written.append(dst)
        return real_replace(src, dst)
    os.replace = replace
    r = _fit(os.path.join(root, "fit"), batch=16)
    rank = dist.get_rank()
    every = dist.all_gather(r["weights"])
    out = {"ranks_agree": float(np.abs(every[0] - every[1]).max()), "weights": r["weights"].tolist(),
           "history": r["history"], "writes": dist.all_gather_object(len(written)),
           "syncbn": type(r["trainer"].model[1]).__name__ == "SyncBatchNorm"}
    out["accumulated"] = _fit(None, 8, epochs=2, accumulate_steps=3)["weights"].tolist()
    # a shuffled loader (distributed by the Trainer): stop after 2 epochs, resume in a new Trainer up to 4
    X, y = _data()[:2]

    def loader(seed=5):
        return td.data.DataLoader(td.data.TensorDataset(X, y), batch_size=16, shuffle=True, seed=seed)
    _fit(os.path.join(root, "r"), 16, epochs=2, train=loader())
    stopped = td.train.checkpoint.load_checkpoint(os.path.join(root, "r", "checkpoints", "last.safetensors"))["epoch"]
    # other initial weights and another loader seed: the checkpoint's weights and data order win
    resumed = _fit(os.path.join(root, "r"), 16, epochs=4, train=loader(6), resume=True, seed=99)
    whole = _fit(os.path.join(root, "u"), 16, epochs=4, train=loader())
    out["resume"] = {"diff": float(np.abs(resumed["weights"] - whole["weights"]).max()),
                     "resumed_from_epoch": stopped,
                     "history_equal": resumed["history"] == whole["history"]}
    if rank == 0:
        print("RESULTS " + json.dumps(out), flush=True)


def worker_trainer_fail(run_dir):
    def fail(epoch, logs=None):
        if epoch == 2 and dist.get_rank() == 1:
            raise RuntimeError("rank 1 fails in epoch 3")
    _fit(run_dir, 16, epochs=6, callbacks=[td.train.LambdaCallback(on_epoch_begin=fail)])


if __name__ == "__main__":
    if sys.argv[1] == "checks":
        worker_checks()
    elif sys.argv[1] == "fail":
        worker_fail(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "trainer":
        worker_trainer(sys.argv[2])
    elif sys.argv[1] == "trainer-fail":
        worker_trainer_fail(sys.argv[2])


@needs_mpi
def test_tidu_train_command_under_mpiexec(tmp_path):
    """`mpiexec -n 2 tidu train CONFIG.toml` works unchanged; an error on the ranks ends the job."""
    out = tmp_path / "run"
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "tidu.cli", "train", "recipes/digits.toml", "--epochs", "1",
           "--out", str(out), "--no-plots"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=root,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("run saved in") == 1  # only rank 0 reports
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["test"]["accuracy"] > 0.5
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=root)
    assert again.returncode != 0 and "already holds a finished run" in again.stderr

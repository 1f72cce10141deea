"""Arrays: which module runs the math (NumPy, or CuPy when present), dtypes, and the RNG.

Ops reach the array library only through :func:`array_module`, so the same op body runs on
NumPy and CuPy (chainer's ``get_array_module``). NumPy ufuncs called on CuPy arrays dispatch to
CuPy through ``__array_ufunc__``, so ``np.exp(x)`` inside an op is device-agnostic too.
"""
import numpy as np

float16, float32, float64 = np.dtype("float16"), np.dtype("float32"), np.dtype("float64")
int8, int16, int32, int64 = np.dtype("int8"), np.dtype("int16"), np.dtype("int32"), np.dtype("int64")
uint8, bool_ = np.dtype("uint8"), np.dtype("bool")
# PyTorch's aliases
half, double, long, int, float, short = float16, float64, int64, int32, float32, int16

_default_dtype = [float32]


def tune_allocator(mmap_threshold=64 << 20, trim_threshold=256 << 20):
    """Keep freed buffers in the process instead of handing them back to the OS (glibc only).

    A training step frees and re-allocates the same few hundred KB arrays every step; by default glibc
    returns large blocks to the OS and page-faults them back in, which measured 2.3× slower on a small
    MLP step and ~1.7× on an LSTM step. Raising the mmap and trim thresholds once keeps them. Returns
    True when applied. Set TIDU_NO_MALLOPT=1 to leave the allocator alone.
    """
    import os
    import sys
    if not sys.platform.startswith("linux") or os.environ.get("TIDU_NO_MALLOPT"):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        return bool(libc.mallopt(m_mmap_threshold, mmap_threshold)) and \
            bool(libc.mallopt(m_trim_threshold, trim_threshold))
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False


tune_allocator()


def get_default_dtype():
    return _default_dtype[0]


def set_default_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"set_default_dtype: expected a floating dtype, got {dtype}")
    _default_dtype[0] = dtype


def cupy_or_none():
    try:
        import cupy
        return cupy
    except Exception:  # not installed, or no CUDA driver
        return None


def array_module(*arrays):
    """The module (numpy or cupy) that owns these arrays."""
    for a in arrays:
        if type(a) is not np.ndarray and type(a).__module__.startswith("cupy"):
            import cupy
            return cupy
    return np


def device_of(array):
    return "cpu" if array_module(array) is np else "cuda"


def to_device(array, device):
    """Move an array to ``"cpu"`` or ``"cuda"`` (``"cuda:N"`` picks a GPU)."""
    device = str(device)
    if device == "cpu":
        return array if isinstance(array, np.ndarray) else array.get()
    if device.startswith("cuda"):
        cp = cupy_or_none()
        if cp is None:
            raise RuntimeError(f"to({device!r}): CuPy with a working CUDA device is required for GPU tensors")
        index = int(device.split(":")[1]) if ":" in device else 0
        with cp.cuda.Device(index):
            return cp.asarray(array)
    raise ValueError(f"to(): unknown device {device!r}; expected 'cpu', 'cuda' or 'cuda:N'")


# --- random numbers: one seeded generator for the process (PyTorch's manual_seed habit) ---
_rng = [np.random.default_rng(0)]


def manual_seed(seed):
    """Seed tidu's generator (and CuPy's, when present); returns the generator."""
    _rng[0] = np.random.default_rng(seed)
    cp = cupy_or_none() if _cupy_imported() else None
    if cp is not None:
        cp.random.seed(seed)
    return _rng[0]


def _cupy_imported():
    import sys
    return "cupy" in sys.modules


def rng():
    return _rng[0]


def get_rng_state():
    """The generator's state as a JSON-able dict (saved in checkpoints)."""
    return _rng[0].bit_generator.state


def set_rng_state(state):
    g = np.random.default_rng()
    g.bit_generator.state = state
    _rng[0] = g


# --- work split over threads ---
# NumPy releases the GIL in BLAS calls, copies and ufuncs, so Python threads working on different
# slices of a batch run at once, each with a single-threaded BLAS. Unlike a multithreaded BLAS alone,
# that also spreads the copies and elementwise passes over the cores (and avoids splitting many small
# matrix products, which collapses on a busy machine). It needs threadpoolctl to reach numpy's BLAS.
_blas, _pool = [], {}
_pool_busy = __import__("threading").Lock()


def blas_controller():
    """threadpoolctl's handle on numpy's BLAS (None when threadpoolctl is missing or cannot drive it)."""
    if not _blas:
        try:
            from threadpoolctl import ThreadpoolController
            libs = ThreadpoolController().select(user_api="blas").lib_controllers
            libs = [lib for lib in libs if "numpy" in lib.filepath] or libs
            _blas.append(libs[0] if libs else None)
        except Exception:  # not installed, or a BLAS it cannot drive
            _blas.append(None)
    return _blas[0]


def parallel_parts(n, worth_it=True, xp=np):
    """[0, n) as (start, end) ranges, one per BLAS thread; a single range for small work, on a GPU,
    or without threadpoolctl."""
    threads = 1
    if worth_it and n > 1 and xp is np:
        blas = blas_controller()
        threads = min(n, blas.get_num_threads()) if blas is not None else 1
    bounds = [n * i // threads for i in range(threads + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def run_parallel(fn, parts):
    """``[fn(part) for part in parts]``, each part on its own thread (the first on the caller's), with
    BLAS single-threaded meanwhile. Runs them one after the other when another caller is already in here."""
    if len(parts) == 1 or not _pool_busy.acquire(blocking=False):
        return [fn(part) for part in parts]
    import os
    blas = blas_controller()
    before = blas.get_num_threads()
    try:
        if _pool.get("pid") != os.getpid() or _pool["workers"] < len(parts) - 1:  # a forked child lost the threads
            from concurrent.futures import ThreadPoolExecutor
            _pool.update(pool=ThreadPoolExecutor(len(parts) - 1, thread_name_prefix="tidu"), pid=os.getpid(),
                         workers=len(parts) - 1)
        blas.set_num_threads(1)
        futures = [_pool["pool"].submit(fn, part) for part in parts[1:]]
        try:
            first = fn(parts[0])
        finally:
            for f in futures:
                f.exception()  # wait for all before BLAS gets its threads back
        return [first] + [f.result() for f in futures]
    finally:
        blas.set_num_threads(before)
        _pool_busy.release()

"""Atomic file writing: a failed run never leaves a half-written file where a good one was."""
import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Write to a temporary file beside ``path``, then rename it over ``path`` only on success.

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> with atomic_write(p, "w") as f:
    ...     _ = f.write("hello")
    >>> with open(p) as f:
    ...     f.read()
    'hello'
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(obj, path):
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)


def read_json(path):
    with open(path) as f:
        return json.load(f)

"""Fixtures shared by the test files."""
import pytest


@pytest.fixture(scope="module")
def one_blas_thread():
    """One BLAS thread for tests that train small models: small GEMMs are faster so on a busy 2-core
    machine, where spinning BLAS threads only contend, and the runs repeat exactly."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1):
        yield

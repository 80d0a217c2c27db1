"""Host LAPACK threads for the small decompositions of the closed-form solvers.

On CPU, XLA runs ``cholesky``/``eigh``/``svd`` through the LAPACK that SciPy
ships (OpenBLAS). After a call OpenBLAS keeps its worker threads spinning for
a while, waiting for more work; on a machine with few cores they then compete
with XLA's own threads for the GEMMs that follow (the next fit's statistics
ran ~1.7× slower on 2 cores). Decompositions of matrices smaller than
``_MULTITHREAD_FROM`` are as fast on one thread, so they run on one and wake
no workers; so does every Cholesky. Larger ``eigh``/``svd`` keep all threads:
there the parallel speed-up (1.5× at 2048) is worth more than the spin.
"""

from __future__ import annotations

import contextlib
import functools

import jax

_MULTITHREAD_FROM = 1024


@functools.cache
def _blas_controller():
    import scipy.linalg.cython_lapack  # noqa: F401  (loads the LAPACK that XLA calls)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextlib.contextmanager
def single_threaded():
    """Runs the block with one BLAS/LAPACK thread (on CPU; elsewhere a no-op).

    For ``cholesky`` and triangular solves, which gain nothing from a second
    thread at the sizes we meet. The caller must wait for its results inside
    the block (``jax.block_until_ready``), since XLA dispatches asynchronously.
    """
    if jax.default_backend() != "cpu":
        yield
        return
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


@contextlib.contextmanager
def single_threaded_below(dim: int):
    """:func:`single_threaded` when the largest matrix dimension ``dim`` is small."""
    if dim >= _MULTITHREAD_FROM:
        yield
        return
    with single_threaded():
        yield


def run_decomposition(dim: int, fn, *args):
    """``fn(*args)`` under :func:`single_threaded_below` ``(dim)``, waited for inside it.

    XLA dispatches asynchronously: without the wait the thread limit would be
    lifted again before the LAPACK call runs. Under tracing (``jit``, ``vmap``)
    the policy cannot apply (nothing runs yet), so ``fn`` is only traced.
    """
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(args)):
        return fn(*args)
    with single_threaded_below(dim):
        return jax.block_until_ready(fn(*args))

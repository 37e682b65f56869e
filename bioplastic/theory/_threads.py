"""Run small dense problems single-threaded (restoring the caller's settings on exit).

The theory's matrices are at most a few hundred wide: extra BLAS / OpenMP threads only add synchronisation, which
on a loaded machine costs 10-100x (measured: a 64x128 @ 128x128 float64 matmul took 8 ms with 2 torch threads and
0.27 ms with 1 on a 2-core machine under load).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from bioplastic._checks import check_positive_int


@contextlib.contextmanager
def limited_threads(num_threads: int | None) -> Iterator[None]:
    """Limit torch's intra-op threads and the BLAS of numpy / scipy to ``num_threads`` (``None``: no change)."""
    if num_threads is None:
        yield
        return
    num_threads = check_positive_int("num_threads", num_threads)
    previous = torch.get_num_threads()
    try:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
    except ImportError:  # pragma: no cover
        blas = contextlib.nullcontext()
    else:
        blas = threadpool_limits(limits=num_threads, user_api="blas")
    try:
        torch.set_num_threads(num_threads)
        with blas:
            yield
    finally:
        torch.set_num_threads(previous)


def run_limited(fn):
    """Decorator: run ``fn`` inside :func:`limited_threads` with its ``num_threads`` keyword (default 1)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, num_threads: int | None = 1, **kwargs):
        with limited_threads(num_threads):
            return fn(*args, num_threads=num_threads, **kwargs)

    return wrapper

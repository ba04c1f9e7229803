"""One BLAS thread for the whole process, set once."""

from __future__ import annotations

import threading

_done = False
_lock = threading.Lock()


def use_one_blas_thread() -> None:
    """Hold numpy's BLAS to one thread in this process, from now on.

    Our matrix products are small (a query through the embedder, a 15-token micro-batch)
    or memory-bound (one vector against 100k rows): a second BLAS thread saves little and,
    when the cores are busy, its spinning made the same work several times slower. Work
    that wants both cores splits it across Python threads instead (the embedder does).

    Set once for the process rather than around each call: BLAS thread counts are
    process-wide, so a per-call limit that one thread lifted on exit turned threading back
    on under another thread's product (two embedding workers, or a search beside them).
    """
    global _done
    if _done:
        return
    with _lock:
        if _done:
            return
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=1, user_api="blas")
        except Exception:  # threadpoolctl missing or confused: run as is
            pass
        _done = True

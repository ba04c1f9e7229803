"""The process's stop: on SIGTERM (or SIGINT) new turns are refused and running ones get a
grace period, before uvicorn's own shutdown goes on.

uvicorn installs its signal handlers before the app starts; the app wraps them: its handler
tells the TurnRunner first (`begin_shutdown`), then calls uvicorn's. uvicorn then stops
listening and waits for the open connections (`timeout_graceful_shutdown`, which
`copines serve` sets past the grace), so the turns still running end on their own: the answer
complete, or cut at the grace with what was shown stored (cause `shutdown`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("copines.api")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def install(turns: Any, grace: float) -> Callable[[], None]:
    """Chain a stop handler before the current SIGTERM and SIGINT handlers; returns the undo.

    Outside the main thread (an app served from a test thread) signals cannot be handled:
    nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def stop(signum: int, frame: Any) -> None:
        if not getattr(turns, "stopping", False):
            log.warning("signal %s: new turns refused, running ones get %.0f s", signum, grace)
            loop.call_soon_threadsafe(turns.begin_shutdown, grace)
        handler = previous.get(signum)
        if callable(handler):
            handler(signum, frame)
        elif handler == signal.SIG_DFL and signum == signal.SIGINT:
            raise KeyboardInterrupt

    for signum in SIGNALS:
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, stop)

    def undo() -> None:
        for signum, handler in previous.items():
            if signal.getsignal(signum) is stop:
                signal.signal(signum, handler)

    return undo

"""Ctrl-C and SIGTERM (what SLURM and Kubernetes send) stop work the same way, never mid-checkpoint."""

from __future__ import annotations

import contextlib
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_as_keyboard_interrupt():
    """Within the block, SIGTERM raises KeyboardInterrupt as Ctrl-C does."""
    if not _in_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def deferred(received: list[int] | None = None):
    """Hold Ctrl-C and SIGTERM until the block ends (e.g. a checkpoint being written).

    Yields a list that collects the signals received (`received`, if given); the caller decides what to do
    with them.
    """
    received = [] if received is None else received
    if not _in_main_thread():
        yield received
        return
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in STOP_SIGNALS}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

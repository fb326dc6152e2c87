"""Ctrl-C kept apart from SIGTERM while MindSpore runs (imported before MindSpore, so no MindSpore here).

MindSpore 2.10 installs its own C++ SIGINT handler at every compiled step (``DefaultIntHandler``) and turns
Ctrl-C into a SIGTERM to the process, so a Python handler would only ever see SIGTERM. Blocking SIGINT in
the main thread before MindSpore starts any thread keeps it from every thread (they inherit the mask);
one thread takes it with ``sigwait`` and hands it to the main thread's Python handler as a SIGINT.
"""
from __future__ import annotations

import _thread
import logging
import signal
import threading
from typing import Any, Dict, Optional

_LOG = logging.getLogger(__name__)


_ROUTED = False


def route_sigint_to_python() -> None:
    """Deliver SIGINT to the Python-level handler whatever handlers native libraries install later (once per
    process: an entry point called again in the same process, as the tests do, adds no second thread)."""
    global _ROUTED
    if _ROUTED or not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        return
    _ROUTED = True
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    def forward() -> None:
        while True:
            signal.sigwait({signal.SIGINT})
            # runs the Python SIGINT handler in the main thread (KeyboardInterrupt by default, the
            # trainer's stop handler during training) and writes the wakeup fd like a real delivery
            _thread.interrupt_main(signal.SIGINT)

    threading.Thread(target=forward, name="sigint-forwarder", daemon=True).start()


class StopRequest:
    """SIGINT and SIGTERM turned into a request to stop after the current step (``name``: the signal's name,
    None until one arrives), for the training and search loops, which save their state and stop there."""

    def __init__(self) -> None:
        self.name: Optional[str] = None
        self._previous: Dict[int, Any] = {}

    def install(self) -> None:
        """Take SIGINT and SIGTERM (again, after a runtime replaced the handlers: the process's own handlers,
        kept the first time, are what :meth:`restore` puts back). Not on the main thread: nothing is taken."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: the run cannot be stopped cleanly by a signal
                return
            if previous != self._handle:
                self._previous.setdefault(sig, previous)

    def restore(self) -> None:
        """Put the process's own handlers back."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum, _frame) -> None:
        self.name = signal.Signals(signum).name
        _LOG.warning("%s received: stopping after this step and saving a checkpoint", self.name)

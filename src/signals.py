"""Ctrl-C kept apart from SIGTERM while MindSpore runs (imported before MindSpore, so no MindSpore here).

MindSpore 2.10 installs its own C++ SIGINT handler at every compiled step (``DefaultIntHandler``) and turns
Ctrl-C into a SIGTERM to the process, so a Python handler would only ever see SIGTERM. Blocking SIGINT in
the main thread before MindSpore starts any thread keeps it from every thread (they inherit the mask);
one thread takes it with ``sigwait`` and hands it to the main thread's Python handler as a SIGINT.
"""
from __future__ import annotations

import _thread
import signal
import threading


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

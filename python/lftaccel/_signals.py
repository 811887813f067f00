"""Deferred Ctrl-C and SIGTERM for the long loops (sampling runs, training), so that a stop
request saves the work done instead of losing everything since the last checkpoint.

A KeyboardInterrupt raised wherever Python happens to be when the signal lands is almost
never between two units of work: a helper's SIGINTs at random times saved nothing in 46 of
50 sampling runs (the signal is delivered as the kernel returns, inside the update), and one
landing inside an HDF5 write was swallowed by h5py's cleanup, so the run went on to the end
(4 of 10). SIGTERM, which batch schedulers send before SIGKILL, killed the run outright.
Under ``deferred_signals`` the handler only records the signal; the loop finishes its unit,
saves, and calls ``stop_for``.
"""

from __future__ import annotations

import contextlib
import signal
import threading

TERM_EXIT_CODE = 128 + signal.SIGTERM  # what a shell reports for a process SIGTERM ended


@contextlib.contextmanager
def deferred_signals(flag: list):
    """While active, SIGINT and SIGTERM only append their number to ``flag``; a second SIGINT
    raises KeyboardInterrupt at once (a user who insists). A signal whose handler is not the
    default (ignored, as SIGINT in a background job, or the caller's own) is left alone, and
    nothing is done outside the main thread, where handlers cannot be set. So a loop run inside
    another's deferral (a sampling run in a training callback) does not defer: the signal goes to
    the outer flag, and the inner loop runs to its end before the outer one stops."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if signum == signal.SIGINT and signal.SIGINT in flag:
            raise KeyboardInterrupt
        flag.append(signum)

    previous = {}
    for signum, default in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
        if signal.getsignal(signum) is default:
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def stop_for(flag: list) -> None:
    """After the work is saved: KeyboardInterrupt for a SIGINT, SystemExit(143) for a SIGTERM
    (the exit status a shell gives a process the signal ended, after the finally blocks ran);
    nothing when no signal came."""
    if signal.SIGTERM in flag:
        raise SystemExit(TERM_EXIT_CODE)
    if flag:
        raise KeyboardInterrupt

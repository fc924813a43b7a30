"""supervisord kept logging through a full disk.

supervisord writes each program's output to the program's log file. When a write fails (the
disk is full) it prints the error to its own stderr; when that fails too (the same full disk,
e.g. `webtv up > data/webtv-up.log`), the exception escapes into supervisord's event loop, which
then closes that program's output channel for good ("uncaptured python exception, closing
channel"; Supervisor/supervisor#984 and #1602 are the same path through a failed rollover):
every later line of the program is lost, even once the disk has room again.

supervisord runs code of ours in one place, the factory of an RPC interface: this one exposes
nothing, and makes supervisord's log handlers drop a line they cannot write (rather than raise),
and reopen a log file whose rollover failed, so that logging resumes by itself.
"""

from __future__ import annotations

import contextlib
import functools

from supervisor import loggers

FACTORY = f"{__name__}:keep_logging_through_write_failures"


class NoMethods:
    """The RPC interface: nothing to call."""


def _drop_unwritable_line(report_error):
    @functools.wraps(report_error)
    def report(handler) -> None:
        with contextlib.suppress(OSError, ValueError):  # stderr on the full disk too
            report_error(handler)

    return report


def _reopen_after_failed_rollover(rollover):
    @functools.wraps(rollover)
    def roll(handler) -> None:
        try:
            rollover(handler)
        except (OSError, ValueError):  # ENOSPC, or the stream a failed rollover closed
            if handler.stream.closed:
                with contextlib.suppress(OSError):
                    handler.stream = open(handler.baseFilename, "ab")

    return roll


def keep_logging_through_write_failures(supervisord, **config) -> NoMethods:
    """supervisord's `supervisor.rpcinterface_factory` for this module (see its docstring)."""
    if not getattr(loggers.Handler.handleError, "__wrapped__", None):
        loggers.Handler.handleError = _drop_unwritable_line(loggers.Handler.handleError)
        loggers.RotatingFileHandler.doRollover = _reopen_after_failed_rollover(
            loggers.RotatingFileHandler.doRollover
        )
    return NoMethods()

"""Keeps what a failed orbax restore leaves running from printing tracebacks.

When one read of a restore fails, orbax raises its error and closes its event
loop, while tensorstore carries on with the other reads in its own threads.
Each then reports to the closed loop (``RuntimeError: Event loop is
closed``); each coroutine left waiting raises when it is finalized, as late as
the interpreter's exit; and each future or task that failed too is logged by
asyncio ("Future exception was never retrieved") when it is collected. Python
prints all of them with their tracebacks: hundreds of lines around the
command line's one-line error, before or after it.

(Kept apart from run.py: these hooks run whenever the garbage collector
finalizes such leftovers, not where run.py's code is.)
"""

from __future__ import annotations

import logging
import os
import sys
import types

_ORBAX_CODE = f"{os.sep}orbax{os.sep}"


def _is_left_by_an_abandoned_read(unraisable) -> bool:
    """Whether an unraisable exception is one of the first two kinds above."""
    coroutine = unraisable.object
    if isinstance(coroutine, types.CoroutineType):
        return _ORBAX_CODE in coroutine.cr_code.co_filename
    error = unraisable.exc_value
    return (
        coroutine is None
        and isinstance(error, RuntimeError)
        and str(error) == "Event loop is closed"
    )


class _AbandonedFutures(logging.Filter):
    """Drops asyncio's reports on futures and tasks collected unfinished or
    with an exception nobody read. The demo runs no asyncio code of its own:
    the futures of its process are orbax's."""

    KINDS = ("exception was never retrieved", "was destroyed but it is pending")

    def filter(self, record: logging.LogRecord) -> bool:
        first_line = record.getMessage().split("\n", 1)[0]
        return not any(kind in first_line for kind in self.KINDS)


def silence() -> None:
    """Wraps ``sys.unraisablehook`` in a hook that drops exactly the first two
    kinds of leftovers and passes every other exception on, and filters the
    third out of asyncio's log. Both stay, as the leftovers keep coming until
    the process exits; calling it again adds nothing."""
    asyncio_log = logging.getLogger("asyncio")
    if not any(isinstance(f, _AbandonedFutures) for f in asyncio_log.filters):
        asyncio_log.addFilter(_AbandonedFutures())
    previous = sys.unraisablehook
    if getattr(previous, "drops_abandoned_reads", False):
        return

    def hook(unraisable):
        if not _is_left_by_an_abandoned_read(unraisable):
            previous(unraisable)

    hook.drops_abandoned_reads = True
    sys.unraisablehook = hook

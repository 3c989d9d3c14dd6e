"""What happens when something fails that per-message handling did not catch.

Every agent handles its messages one failure at a time (a bad message is dead-lettered, a bad
record skipped), so an exception that still escapes an agent is a bug or a lost dependency
(the broker, the store). faust would log it and leave a live process that consumes nothing;
:func:`guarded` instead ends the process at once, before the batch's offsets are acknowledged,
so its supervisor (the local stack, Kubernetes) restarts it and the messages are redelivered.
Timers catch, log and go on at their next interval; a failure that would lose what a timer
produced (an alert whose rule already fires) calls :func:`exit_process` itself.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn

log = logging.getLogger(__name__)

#: Exit status of a process whose agent crashed (``EX_SOFTWARE``).
EXIT_AGENT_CRASHED = 70


def exit_process(what: str, exc: BaseException) -> NoReturn:
    """Log why, flush the logs and end the process without acknowledging anything more."""
    from driftwarden.core.secrets import scrub

    log.critical(
        "%s failed (%s: %s); the process exits now so that its supervisor restarts it and the messages "
        "it had not acknowledged are redelivered. If this repeats, the traceback shows the cause.",
        what, type(exc).__name__, scrub(str(exc))[:500], exc_info=exc,
    )
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # noqa: BLE001, S110 - exiting anyway
            pass
    sys.stderr.flush()
    os._exit(EXIT_AGENT_CRASHED)


def guarded(what: str, exit: Callable[[str, BaseException], NoReturn] = exit_process):
    """Decorate an agent's function: an exception that escapes it ends the process (see above)."""

    def decorate(fun: Callable[..., Awaitable[None]]):
        @functools.wraps(fun)
        async def agent(stream):
            try:
                await fun(stream)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the process must not live on without its agent
                exit(what, exc)

        return agent

    return decorate

"""An exception that escapes an agent ends its process (so that it restarts and is redelivered)."""

from __future__ import annotations

import asyncio

import pytest

from driftwarden.streams.guard import guarded


class Exited(Exception):
    pass


def test_an_exception_escaping_an_agent_ends_the_process_with_what_failed():
    calls = []

    def exit_(what, exc):
        calls.append((what, type(exc).__name__))
        raise Exited

    @guarded("the test agent", exit=exit_)
    async def agent(stream):
        raise RecursionError("deep")

    with pytest.raises(Exited):
        asyncio.run(agent(None))
    assert calls == [("the test agent", "RecursionError")]


def test_a_cancelled_agent_is_not_a_crash():
    @guarded("the test agent", exit=lambda *_: pytest.fail("a cancellation is a stop, not a crash"))
    async def agent(stream):
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(agent(None))

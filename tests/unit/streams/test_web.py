"""The web surface: data pages need the bearer token beyond loopback; readiness names what fails."""

from __future__ import annotations

import asyncio

import pytest

from driftwarden.core.errors import SettingsError
from driftwarden.core.settings import is_loopback, load_settings
from driftwarden.streams.web import Readiness, authorized


def test_loopback_addresses_are_told_apart_from_the_network():
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.8.0.1"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "sink.example"))


def test_a_bind_beyond_loopback_without_a_token_refuses_to_start():
    with pytest.raises(SettingsError, match="DRIFTWARDEN_WEB_TOKEN"):
        load_settings(web_bind="0.0.0.0")
    with pytest.raises(SettingsError, match="DRIFTWARDEN_WEB_TOKEN"):
        load_settings(web_bind="0.0.0.0", web_token="")


def test_data_pages_need_the_token_only_beyond_loopback():
    assert authorized(load_settings(), None)
    settings = load_settings(web_bind="0.0.0.0", web_token="s3cret")
    assert not authorized(settings, None)
    assert not authorized(settings, "Bearer wrong")
    assert not authorized(settings, "Basic czNjcmV0")
    assert authorized(settings, "Bearer s3cret")


def test_readiness_names_each_failing_check_and_a_hung_one_times_out(monkeypatch):
    monkeypatch.setattr("driftwarden.streams.web.CHECK_TIMEOUT_S", 0.05)
    readiness = Readiness()

    async def ok():
        return True, "fine"

    async def broken():
        raise ConnectionError("down")

    async def hung():
        await asyncio.sleep(5)
        return True, ""

    readiness.add("models_loaded", ok)
    assert asyncio.run(readiness.run()) == (True, {"models_loaded": {"ok": True, "detail": "fine"}})
    readiness.add("store_reachable", broken)
    readiness.add("partitions_assigned", hung)
    ready, detail = asyncio.run(readiness.run())
    assert not ready
    assert detail["store_reachable"] == {"ok": False, "detail": "ConnectionError"}
    assert detail["partitions_assigned"]["detail"].startswith("no answer within")

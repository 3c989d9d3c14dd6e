"""Building a stream process: a data directory it cannot write is a settings error naming the
variable, not a traceback."""

from __future__ import annotations

import asyncio

import pytest

from driftwarden.core.errors import SettingsError
from driftwarden.core.settings import load_settings
from driftwarden.streams.app import create_app


def test_a_data_dir_that_cannot_be_written_names_the_variable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings = load_settings(data_dir=blocker / "state")
    with pytest.raises(SettingsError) as caught:
        create_app("score", settings)
    assert caught.value.problems[0][0] == "DRIFTWARDEN_DATA_DIR"
    assert "not writable" in str(caught.value) and "mount a writable volume" in str(caught.value)


class NeverEmptyConsumer:
    """faust's consumer as it was at a stop: a batch faust dropped is never acknowledged."""

    def __init__(self) -> None:
        self._unacked_messages = {"dropped-1", "dropped-2"}
        self.waits = 0

    async def wait_empty(self) -> None:
        self.waits += 1
        await asyncio.sleep(3600)


def test_a_stop_waits_for_batches_in_flight_a_bounded_time_and_a_rebalance_waits_them_out(monkeypatch, caplog):
    from driftwarden.streams import app as app_module
    from driftwarden.streams.transport import transport_class

    monkeypatch.setattr(app_module, "STOP_WAIT_S", 0.2)
    app = app_module.app_class(transport_class(100), "sink")("t", broker="kafka://127.0.0.1:9")
    consumer = NeverEmptyConsumer()

    async def scenario() -> None:
        # A rebalance (not stopping): the wait is not cut short.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(app._consumer_wait_empty(consumer, app.log), 1.0)
        app._stopped.set()  # what mode's Service.stop() does first
        await asyncio.wait_for(app._consumer_wait_empty(consumer, app.log), 5.0)

    asyncio.run(scenario())
    assert consumer.waits == 2
    assert "2 message(s) handed to agents were not acknowledged" in caplog.text
    assert "read again at the next start" in caplog.text

"""Building a stream process: a data directory it cannot write is a settings error naming the
variable, not a traceback."""

from __future__ import annotations

import asyncio
import weakref

import pytest
from faust.transport.consumer import Consumer

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


class DroppedBatchConsumer:
    """faust's own waiting code (``Consumer.wait_empty``, which ignores being cancelled) on a consumer
    whose two messages were handed to an agent that dropped them at the stop: never acknowledged."""

    wait_empty = Consumer.wait_empty
    _wait_for_ack = Consumer._wait_for_ack
    _clean_unacked_messages = Consumer._clean_unacked_messages

    class Message:
        acked = False
        refcount = 1

    class Quiet:
        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    def __init__(self) -> None:
        self.should_stop = False
        self.kept = [self.Message(), self.Message()]
        self._unacked_messages = weakref.WeakSet(self.kept)
        self._waiting_for_ack = None
        self.loop = asyncio.get_running_loop()
        self.log = self.diag = self.Quiet()
        self.app = type("App", (), {"agents": type("Agents", (), {"human_tracebacks": lambda self: ""})()})()
        self.commits = 0

    async def commit(self, *args, **kwargs) -> bool:
        self.commits += 1
        return True

    async def commit_and_end_transactions(self) -> None:
        self.commits += 1


def test_a_stop_waits_for_batches_in_flight_a_bounded_time_and_a_rebalance_waits_them_out(caplog):
    from driftwarden.streams.app import app_class
    from driftwarden.streams.transport import transport_class

    app = app_class(transport_class(100), "sink", 0.3)("t", broker="kafka://127.0.0.1:9")

    async def scenario() -> DroppedBatchConsumer:
        consumer = DroppedBatchConsumer()
        # A rebalance (not stopping): faust's wait goes on while messages are unacknowledged.
        rebalance = asyncio.ensure_future(app._consumer_wait_empty(consumer, app.log))
        await asyncio.sleep(1.5)
        assert not rebalance.done()
        rebalance.cancel()
        app._stopped.set()  # what mode's Service.stop() does first
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(app._consumer_wait_empty(consumer, app.log), 10.0)
        assert asyncio.get_running_loop().time() - started < 5.0
        return consumer

    consumer = asyncio.run(scenario())
    assert consumer.commits >= 1  # the last commit (of acknowledged offsets only) was made
    assert "2 message(s) handed to agents were not acknowledged" in caplog.text
    assert "read again at the next start" in caplog.text

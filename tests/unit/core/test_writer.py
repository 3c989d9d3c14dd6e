"""Inserts: outages are retried until acknowledged; rows refused as data are split out."""

from __future__ import annotations

import asyncio

from clickhouse_connect.driver.exceptions import DataError, OperationalError

from driftwarden.core.storage.writer import insert_splitting, is_data_error


def test_data_errors_are_told_apart_from_outages():
    assert is_data_error(DataError("Unable to create native array for column `tokens_in`"))
    assert is_data_error(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"))
    assert is_data_error(OverflowError("int too big to convert"))
    assert not is_data_error(OperationalError("connection refused"))
    assert not is_data_error(ConnectionResetError())


def test_a_bad_row_is_split_out_of_its_batch_and_the_others_are_written():
    written, rejected = [], []

    def write(rows):
        if "bad" in rows:
            raise DataError("value out of range")
        written.extend(rows)

    async def reject(row, exc):
        rejected.append((row, str(exc.cause)))

    rows = [f"r{i}" for i in range(10)] + ["bad"] + [f"s{i}" for i in range(5)]
    count = asyncio.run(insert_splitting(write, rows, what="rows", max_backoff_s=0.01, on_rejected=reject))
    assert count == 15 and sorted(written) == sorted(r for r in rows if r != "bad")
    assert rejected == [("bad", "value out of range")]


def test_an_outage_is_retried_and_nothing_is_rejected():
    attempts = []

    def write(rows):
        attempts.append(len(rows))
        if len(attempts) < 3:
            raise OperationalError("connection refused")

    async def reject(row, exc):
        raise AssertionError("an outage must not reject rows")

    count = asyncio.run(insert_splitting(write, ["a", "b"], what="rows", max_backoff_s=0.01, on_rejected=reject))
    assert count == 2 and attempts == [2, 2, 2]

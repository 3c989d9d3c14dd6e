"""The one way to get a ClickHouse client: an embedded chdb store or a server, by DSN."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import clickhouse_connect

from driftwarden.core.errors import StorageError, StoreLockedError
from driftwarden.core.secrets import mask_url, scrub, url_secrets
from driftwarden.core.settings import Settings
from driftwarden.core.storage.ddl import migrate
from driftwarden.core.storage.retention import apply_retention

log = logging.getLogger(__name__)


def open_client(settings: Settings, *, migrate_schema: bool = True):
    """Open (and by default migrate) the store the settings name.

    An embedded ``chdb://`` directory may be opened by one process at a time; a second
    process gets :class:`StoreLockedError`.
    """
    url = settings.clickhouse_url
    try:
        if settings.embedded_store:
            settings.store_dir.mkdir(parents=True, exist_ok=True)
        client = clickhouse_connect.get_client(dsn=url)
    except Exception as exc:
        message = str(exc)
        if settings.embedded_store and ("lock" in message.lower() or "EmbeddedServer" in message):
            raise StoreLockedError(str(settings.store_dir), read_owner(settings).get("pid")) from exc
        # Not chained: the driver's own error (and its traceback) may hold the DSN's password.
        raise StorageError(f"connect to {mask_url(url)}", scrubbed(exc, url)) from None
    if migrate_schema:
        try:
            migrate(client, settings.clickhouse_database)
            apply_retention(client, settings.clickhouse_database, settings.retention)
        except Exception as exc:
            raise StorageError("apply the schema", scrubbed(exc, url)) from None
    return client


def open_store(settings: Settings, *, migrate_schema: bool = True):
    """A :class:`~driftwarden.core.storage.store.ClickHouseStore` on :func:`open_client`."""
    from driftwarden.core.storage.store import ClickHouseStore

    return ClickHouseStore(open_client(settings, migrate_schema=migrate_schema), settings.clickhouse_database)


def scrubbed(exc: BaseException, dsn: str) -> Exception:
    """A stand-in for ``exc`` (same type name) whose message has the DSN's secrets and every URL
    masked, to be raised or logged in its place."""
    stand_in = type(type(exc).__name__, (Exception,), {"__module__": type(exc).__module__})
    return stand_in(scrub(str(exc), [dsn, *url_secrets(dsn)]))


# --- ownership of the embedded store -----------------------------------------------------------

def owner_file(settings: Settings) -> Path:
    return settings.data_dir / "sink.owner"


def write_owner(settings: Settings, web_port: int) -> None:
    """Record that this process owns the embedded store and where its HTTP page answers."""
    path = owner_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()} {web_port}\n")


def clear_owner(settings: Settings) -> None:
    path = owner_file(settings)
    try:
        if read_owner(settings).get("pid") == os.getpid():
            path.unlink()
    except FileNotFoundError:
        pass


def read_owner(settings: Settings) -> dict[str, int]:
    """``{"pid": .., "port": ..}`` of a live owner, or ``{}``."""
    try:
        pid_s, port_s = owner_file(settings).read_text().split()
        pid, port = int(pid_s), int(port_s)
    except (FileNotFoundError, ValueError):
        return {}
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return {}
    except PermissionError:
        pass
    return {"pid": pid, "port": port}

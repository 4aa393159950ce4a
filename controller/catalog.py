"""The embedded run catalog: an in-process tiled server over SQLite, written by TiledWriter.

Layout of a data directory (default ``./tomocycle-data``)::

    catalog.db      tiled's SQLite catalog (run metadata, descriptors, stream structure)
    tables.sqlite   event tables (scalars such as V, I, angle, image_key): SQLite, not DuckDB,
                    because DuckDB locks other processes out while a writer has it open
    data/           tiled's writable storage for anything tiled itself writes
    frames/         HDF5 files written by the detector (NXtomo layout); tiled reads them in place

No server process is started: tiled's ASGI app runs inside the calling process and a client
talks to it through an in-memory transport. A second process opens the same directory to read.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path("tomocycle-data")
#: The root spec that makes tiled hand back bluesky_tiled_plugins' CatalogOfBlueskyRuns client.
_ROOT_SPECS = [{"name": "CatalogOfBlueskyRuns", "version": "3.0"}]
#: Events are written in batches; a stop document flushes whatever is pending.
WRITER_BATCH_SIZE = 50
#: Longest wall time a single-event row waits in the writer's cache before it is written (s).
PAGE_HOLD_S = 1.0
#: How long a write to the SQLite files waits for another process's lock before it fails (ms).
SQLITE_BUSY_TIMEOUT_MS = 60_000


class CatalogError(RuntimeError):
    """The data directory cannot hold a catalog (unwritable, corrupt, ...)."""


@dataclass(frozen=True)
class DataPaths:
    """Where each part of a data directory lives."""

    root: Path

    @property
    def catalog_db(self) -> Path:
        return self.root / "catalog.db"

    @property
    def tables(self) -> Path:
        return self.root / "tables.sqlite"

    @property
    def storage(self) -> Path:
        return self.root / "data"

    @property
    def frames(self) -> Path:
        return self.root / "frames"


def prepare_data_dir(data_dir: str | os.PathLike[str], *, create: bool = True) -> DataPaths:
    """Check (and create) a data directory, failing early with a clear message.

    Parameters
    ----------
    data_dir
        The directory that holds the catalog and the frame files.
    create
        Create it if missing; otherwise a missing directory is an error (readers).

    Returns
    -------
    DataPaths
        The resolved paths.

    Raises
    ------
    CatalogError
        If the directory cannot be created or written, or is missing when ``create`` is false.
    """
    paths = DataPaths(Path(data_dir).expanduser().resolve())
    if not create:
        if not paths.catalog_db.exists():
            raise CatalogError(f"--data {data_dir}: no tomocycle catalog there (missing {paths.catalog_db.name})")
        return paths
    try:
        for folder in (paths.root, paths.storage, paths.frames):
            folder.mkdir(parents=True, exist_ok=True)
        probe = paths.root / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise CatalogError(f"--data {data_dir}: cannot write there ({err.strerror or err})") from None
    return paths


def open_catalog(data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR, *, create: bool = True) -> Any:
    """Open (creating if needed) the embedded catalog in ``data_dir``.

    Parameters
    ----------
    data_dir
        Data directory; see the module docstring for its layout.
    create
        Create the directory and catalog if missing (writers). Readers pass False.

    Returns
    -------
    bluesky_tiled_plugins.clients.catalog_of_bluesky_runs.CatalogOfBlueskyRuns
        A tiled client; ``client[uid]`` is a run, ``client.values()`` iterates runs.
    """
    paths = prepare_data_dir(data_dir, create=create)
    with warnings.catch_warnings():
        # tiled's in-process transport uses starlette's TestClient, which warns about httpx.
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from tiled.catalog import from_uri
        from tiled.client import Context, from_context
        from tiled.server.app import build_app
    _quiet_third_party_loggers()
    _register_document_exporter()
    _wait_for_sqlite_locks()
    if create:
        _use_wal(paths.tables)

    try:
        adapter = from_uri(
            f"sqlite:///{paths.catalog_db}",
            writable_storage=[str(paths.storage), f"sqlite:///{paths.tables}"],
            readable_storage=[str(paths.frames)],
            # Initialising runs a subprocess (alembic); skip it when the database exists.
            init_if_not_exists=not paths.catalog_db.exists(),
            specs=_ROOT_SPECS,
        )
        if create:
            _use_wal(paths.catalog_db)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
            context = Context.from_app(build_app(adapter))
            return from_context(context)
    except Exception as err:  # tiled raises many types for a broken database
        raise CatalogError(f"--data {data_dir}: cannot open the catalog ({type(err).__name__}: {err})") from err


def make_writer(client: Any) -> Any:
    """A TiledWriter subscribed to nothing yet; subscribe it to a RunEngine.

    Events are batched (``WRITER_BATCH_SIZE``); event pages are written as they come, because
    tomocycle publishes a page exactly when it wants the data safe and visible (the operando
    plan flushes its polls every few seconds and at every transition).
    """
    from bluesky_tiled_plugins import TiledWriter
    from bluesky_tiled_plugins.writing import tiled_writer
    from event_model import unpack_event_page

    class _PageWriter(tiled_writer._RunWriter):
        # TiledWriter unpacks a page into events and writes every `batch_size` of them; a page
        # of a thousand polls would cost twenty writes. Here a page of several rows is one
        # write. Single-row pages (trigger_and_read in step scans) are batched as TiledWriter
        # does, but never held longer than PAGE_HOLD_S of wall time. Written against
        # bluesky-tiled-plugins 2.0 (pinned < 3), whose row cache is private.
        _last_write: dict[str, float]

        def event_page(self, doc: Any) -> None:
            node = self._desc_nodes[doc["descriptor"]]
            name = node.item["id"]
            cache = self._internal_data_cache[name]
            for event in unpack_event_page(doc):
                row = {"seq_num": event["seq_num"], "time": event["time"], **event["data"]}
                row.update({f"ts_{k}": v for k, v in event["timestamps"].items()})
                cache.append(row)
            if not hasattr(self, "_last_write"):
                self._last_write = {}
            now = time.monotonic()
            if (len(doc["seq_num"]) > 1 or len(cache) >= self._batch_size
                    or now - self._last_write.get(name, now) >= PAGE_HOLD_S):
                self._write_internal_data(cache, desc_node=node)
                cache.clear()
                self._last_write[name] = now
            self._last_write.setdefault(name, now)

    class _Writer(TiledWriter):
        def _factory(self, name: str, doc: Any) -> Any:
            # TiledWriter._factory without normalizer and backups, which tomocycle does not use.
            return [_PageWriter(self.client, batch_size=self._batch_size, max_array_size=self._max_array_size,
                                validate=self._validate, ignore_errors=self.ignore_errors)], []

    # No normalizer: tomocycle emits current event-model documents, and the normalizer's
    # per-event re-emission costs half a millisecond per poll.
    return _Writer(client, batch_size=WRITER_BATCH_SIZE, normalizer=None)


def _use_wal(db: Path) -> None:
    """Put an SQLite file in write-ahead-log mode (persistent in the file; writers call this).

    Other processes read the data directory while an experiment writes it: the monitor reads the
    polls, the live consumer reads and writes runs. In SQLite's default rollback-journal mode a
    reader's shared lock makes the writer's commit wait (or fail); with a write-ahead log readers
    and the writer never wait for each other, and only two writers take turns.
    """
    import sqlite3
    from contextlib import closing

    try:
        with closing(sqlite3.connect(db, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)) as conn:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as err:  # still usable in the old mode: say so, do not stop the experiment
        log.warning("%s: could not switch to write-ahead logging (%s)", db, err)


def _wait_for_sqlite_locks() -> None:
    # tiled writes event tables through ADBC's SQLite driver. Its connections (the pool's clones
    # of one template connection) have no busy timeout: a write that meets another process's
    # lock (the live consumer recording an analysis run while the RunEngine stores polls) fails
    # at once with "database is locked" and ends the experiment. Every new pooled connection
    # gets a busy timeout here instead, so the two writers take turns.
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    if not event.contains(Pool, "connect", _adbc_sqlite_busy_timeout):
        event.listen(Pool, "connect", _adbc_sqlite_busy_timeout)


def _adbc_sqlite_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
    get_info = getattr(dbapi_connection, "adbc_get_info", None)
    if get_info is None or get_info().get("vendor_name") != "SQLite":
        return
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_MS)}")
    finally:
        cursor.close()


def _register_document_exporter() -> None:
    # ``run.documents()`` asks the server for a JSON-seq export of the run (``tomocycle replay``
    # re-emits a stored experiment that way); tiled serves it only once the exporter is registered.
    from bluesky_tiled_plugins.exporters import json_seq_exporter
    from tiled.media_type_registration import default_serialization_registry

    if "application/json-seq" not in default_serialization_registry.media_types("BlueskyRun"):
        default_serialization_registry.register("BlueskyRun", "application/json-seq", json_seq_exporter)


def _quiet_third_party_loggers() -> None:
    # tiled logs every in-process HTTP request at INFO; that drowns the operator's console.
    for name in ("tiled", "tiled.server.app", "httpx", "uvicorn", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)

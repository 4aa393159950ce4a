"""Several processes on one data directory: a writer waits for another process's lock, never fails.

The RunEngine stores polls while the live consumer records analysis runs into the same catalog
and the monitor reads the polls. SQLite lets one writer at a time; the others must wait their
turn (controller.catalog sets a busy timeout and write-ahead logging) instead of failing with
"database is locked", which would end the experiment.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from event_model import compose_run

from controller.catalog import make_writer, open_catalog

pytestmark = pytest.mark.system

HOLD_S = 1.5
#: Takes the write lock of an SQLite file, says so, keeps it HOLD_S, then commits.
HOLDER = textwrap.dedent(f"""
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    time.sleep({HOLD_S})
    conn.execute("COMMIT")
""")


def _page(descriptor: dict, seq: range) -> dict:
    n = len(seq)
    now = time.time()
    return {"descriptor": descriptor["uid"], "uid": [f"{descriptor['uid']}-{i}" for i in seq],
            "seq_num": list(seq), "time": [now] * n, "data": {"voltage": [3.0 + 0.01 * i for i in seq]},
            "timestamps": {"voltage": [now] * n}, "filled": {}}


def test_a_write_waits_for_another_process_lock_on_the_event_tables(data_dir: Path) -> None:
    client = open_catalog(data_dir)
    tables = data_dir / "tables.sqlite"
    with sqlite3.connect(tables) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    writer = make_writer(client)
    bundle = compose_run(metadata={"plan_name": "lock-test"})
    writer("start", bundle.start_doc)
    desc = bundle.compose_descriptor(name="primary", data_keys={
        "voltage": {"source": "test", "dtype": "number", "shape": []}}).descriptor_doc
    writer("descriptor", desc)
    writer("event_page", _page(desc, range(1, 4)))  # creates the table
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tables)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        writer("event_page", _page(desc, range(4, 7)))  # meets the other process's lock
        waited = time.monotonic() - t0
        writer("stop", bundle.compose_stop(exit_status="success"))
    finally:
        holder.communicate(timeout=30)
    assert holder.returncode == 0
    # It waited for the lock to go (rather than failing), and every row is stored.
    assert waited > 0.5 * HOLD_S
    voltage = open_catalog(data_dir, create=False)[bundle.start_doc["uid"]]["primary"]["voltage"].read()
    np.testing.assert_allclose(np.asarray(voltage), [3.0 + 0.01 * i for i in range(1, 7)])

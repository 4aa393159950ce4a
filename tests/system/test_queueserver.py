"""bluesky-queueserver with the tomocycle profile: plans queued over 0MQ run on the simulator.

A real Redis (Debian's ``redis-server``, which .ci/run installs) on a free loopback port,
``tomocycle queueserver`` (start-re-manager with ``controller.queueserver.startup``), and the
manager's own 0MQ API, as the qserver CLI and the usual GUI clients use it. The runs the queue
executed must be in the data directory's catalog, with their frames, and the operando
experiment in ``experiments/`` like one started by ``tomocycle run``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from tests.system.operando_util import write_protocol

pytestmark = [pytest.mark.system]

REDIS = shutil.which("redis-server")
REPO = Path(__file__).resolve().parents[2]
STEPS = """\
  - {do: scan, label: pristine}
  - {do: Charge at C/3 until 4.3 V or 20 minutes, label: cc, on: {20 minutes: scan then next}}
"""
#: Opening the environment imports tomocycle and opens the catalog in the worker (slow on 2 shared cores).
TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, predicate: Callable[[], Any], timeout: float = TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def redis(tmp_path: Path) -> str:
    """A private Redis on a free loopback port, nothing saved to disk."""
    if REDIS is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (.ci/run installs Debian's redis-server)")
        pytest.skip("redis-server is not installed: apt-get install redis-server")
    port = _free_port()
    proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            assert proc.poll() is None, "redis-server exited"
            return False

    try:
        _wait("redis-server", up, timeout=30)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class Manager:
    """Requests to the RE Manager's 0MQ control socket: JSON ``{"method", "params"}`` over REQ/REP,
    the API that the qserver CLI and bluesky-queueserver-api speak."""

    def __init__(self, address: str) -> None:
        self.address = address

    def request(self, method: str, params: dict[str, Any] | None = None, timeout_ms: int = 10000
                ) -> dict[str, Any] | None:
        """The reply, or None if the manager did not answer in time."""
        import zmq

        ctx = zmq.Context()
        sock = ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(self.address)
            sock.send_json({"method": method, "params": params or {}})
            return sock.recv_json() if sock.poll(timeout_ms) else None
        finally:
            sock.close()
            ctx.term()

    def __call__(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        msg = self.request(method, params)
        assert msg is not None, f"{method}: no answer"
        assert msg.get("success", True), f"{method}: {msg}"
        return msg

    def status(self) -> dict[str, Any] | None:
        return self.request("status", timeout_ms=2000)

    def idle(self) -> bool:
        status = self.status()
        return bool(status) and status["manager_state"] == "idle"


def test_queued_tomo_scan_and_operando_run_on_the_simulator(redis: str, tmp_path: Path,
                                                           _catalog_template: Path) -> None:
    try:
        import bluesky_queueserver  # noqa: F401 - in the test extra; the manager imports it
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("bluesky-queueserver is not installed (it is in the test extra)")
        pytest.skip("pip install 'tomocycle[queueserver]'")
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(_catalog_template, data / "catalog.db")
    protocol = write_protocol(tmp_path, STEPS)
    control = f"tcp://127.0.0.1:{_free_port()}"
    server = subprocess.Popen([sys.executable, "-m", "controller.cli", "queueserver", "--data", str(data),
                               "--protocol", str(protocol), "--redis", redis, "--control", control,
                               "--info", f"tcp://127.0.0.1:{_free_port()}"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    manager = Manager(control)
    try:
        _wait("the manager", manager.idle)
        manager("environment_open")
        _wait("the environment", lambda: manager.idle() and manager.status()["worker_environment_exists"])
        allowed = manager("plans_allowed", {"user_group": "primary"})["plans_allowed"]
        assert set(allowed) == {"tomo_scan", "operando"}
        devices = manager("devices_allowed", {"user_group": "primary"})["devices_allowed"]
        assert {"potentiostat", "rotation", "sample", "shutter", "detector"} <= set(devices)
        for name, kwargs in (("tomo_scan", {"projections": 12, "darks": 2, "flats": 3, "md": {"operator": "qs"}}),
                             ("operando", {})):
            manager("queue_item_add", {"item": {"item_type": "plan", "name": name, "kwargs": kwargs},
                                       "user": "test", "user_group": "primary"})
        manager("queue_start")
        _wait("the queue", lambda: (s := manager.status()) and s["manager_state"] == "idle"
              and s["items_in_queue"] == 0 and s["items_in_history"] == 2)
        history = manager("history_get")["items"]
        manager("environment_close")
        _wait("the environment to close", lambda: manager.idle() and not manager.status()["worker_environment_exists"])
        manager("manager_stop")
        out, _ = server.communicate(timeout=60)
    except BaseException:
        server.kill()
        print(server.communicate()[0][-5000:])  # the manager's log, shown with the failure
        raise
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert [h["name"] for h in history] == ["tomo_scan", "operando"]
    assert [h["result"]["exit_status"] for h in history] == ["completed", "completed"], history

    from controller.catalog import open_catalog

    client = open_catalog(data, create=False)
    # The scan: one run, its frames readable from the catalog (2 darks, 3 flats, 12 projections).
    scan = client[history[0]["result"]["run_uids"][0]]
    start = scan.metadata["start"]
    assert start["plan_name"] == "tomo_scan" and start["operator"] == "qs" and start["queueserver"] is True
    assert scan.metadata["stop"]["exit_status"] == "success"
    keys = np.asarray(scan["primary"]["detector_image_key"].read())
    assert sorted(np.unique(keys, return_counts=True)[1].tolist()) == [2, 3, 12]
    assert np.asarray(scan["primary"]["detector_image"].read()).shape[0] == 17
    # The experiment: electrochemistry run plus scans T0, T1, and its checkpoint, as `tomocycle run` leaves them.
    runs = [client[uid].metadata["start"] for uid in history[1]["result"]["run_uids"]]
    experiment_id = runs[0]["experiment_id"]
    assert [r["plan_name"] for r in runs] == ["operando", "tomo_scan", "tomo_scan"]
    assert [r.get("timestep") for r in runs[1:]] == ["T0", "T1"]
    checkpoint = json.loads((data / "experiments" / experiment_id / "checkpoint.json").read_text())
    assert checkpoint["finished"] is True and checkpoint["controller"]["state"] == "done"
    assert checkpoint["beamline"]["queueserver"] is True

"""The `002` preset end to end: simulated beamline, 0MQ live pipeline, live consumer, monitor page.

``tomocycle run 002 --sim --publish`` (scans cut to 32 projections, polls every 30 s of cell
time, so the ten scans T0..T9 come in well under a minute) runs with ``tomocycle consume``
following it over 0MQ. The monitor page, loaded in headless Chromium, must then show what the
catalog and the consumer's stored analysis hold: ten scan markers, the newest analysed
timestep's slices (the files on disk, loaded by the browser), and the class fractions and
thickness of every timestep. (Replay against live: tests/system/test_live_pipeline.py.)
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from controller.experiment_analysis import analysis_root, runs_of_experiment
from tests.system.browser import Dom, dump_dom, need_browser

pytestmark = [pytest.mark.system, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TIMESTEPS = [f"T{i}" for i in range(10)]
#: Enough projections for the particle analysis to find the particles of the nano phantom.
PROJECTIONS = 32
#: Upper bound for an experiment or a consumer (generous: 2 shared cores in CI).
TIMEOUT_S = 300


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _free_port_pair() -> int:
    """A port P with P and P+1 free (a proxy takes documents on P and serves consumers on P+1)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


def _consumer(data: Path, out_port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "controller.cli", "consume", "--data", str(data),
                             "--proxy", f"127.0.0.1:{out_port}", "--exit-when-finished", "--catchup", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())


def _consumer_stats(log: str) -> dict[str, int]:
    """The counters of the consumer's last line, ``consumer: ConsumerStats(documents=..., ...)``."""
    line = re.search(r"consumer: ConsumerStats\((.*)\)", log)
    assert line, log[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line.group(1))}


def _catalog_runs(data: Path, experiment_id: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The experiment's scan runs' start documents (oldest first), and its analysis runs by
    timestep (start document and the numbers of their one event), from one catalog client."""
    from controller.catalog import open_catalog

    scans, analyses = [], {}
    for _, run in runs_of_experiment(open_catalog(data, create=False), experiment_id):
        start = run.metadata["start"]
        if start.get("plan_name") == "tomo_scan":
            scans.append(start)
        elif start.get("kind") == "analysis":
            assert start["timestep"] not in analyses, f"two analysis runs of {start['timestep']}"
            event = run["primary"].read()
            analyses[start["timestep"]] = {"start": start,
                                           "event": {k: event[k].values[0].item() for k in event.data_vars}}
    return sorted(scans, key=lambda d: d["time"]), analyses


@pytest.fixture(scope="module")
def live002(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The 002 preset run through the CLI, publishing over 0MQ, with a live consumer following it."""
    need_browser()
    tmp = tmp_path_factory.mktemp("live002")
    data = tmp / "data"
    in_port = _free_port_pair()
    # The consumer subscribes before the proxy exists (0MQ reconnects), as an operator might start it.
    consumer = _consumer(data, in_port + 1)
    try:
        run = subprocess.run([sys.executable, "-m", "controller.cli", "run", "002", "--sim", "--data", str(data),
                              "--publish", f"127.0.0.1:{in_port}", "--projections", str(PROJECTIONS),
                              "--poll-period", "30", "-q"],
                             capture_output=True, text=True, timeout=TIMEOUT_S, env=_env(), cwd=tmp)
        if run.returncode != 0:
            consumer.kill()  # the experiment will not finish: do not wait for the consumer
        log, _ = consumer.communicate(timeout=TIMEOUT_S)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.communicate()
    assert run.returncode == 0, run.stderr[-3000:]
    assert consumer.returncode == 0, log[-3000:]
    experiment_id = re.search(r"experiment:\s+(\w+)", run.stdout).group(1)
    return {"tmp": tmp, "data": data, "id": experiment_id, "stats": _consumer_stats(log),
            "root": analysis_root(data, experiment_id)}


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def test_monitor_shows_the_002_experiment_as_analysed_live(live002: dict[str, Any]) -> None:
    from controller.monitor import MonitorServer
    from controller.monitor_data import MonitorData

    data, eid, root = live002["data"], live002["id"], live002["root"]
    stats = live002["stats"]
    # Live, not a catch-up: documents came over 0MQ, previews were drawn while scans ran.
    assert stats["timesteps_done"] == 10 and stats["documents"] > 0 and stats["previews"] > 0, stats
    summary = json.loads((root / "summary.json").read_text())
    steps = summary["timesteps"]
    assert [s["timestep"] for s in steps] == TIMESTEPS and summary["experiment_finished"] is True
    # The analysis found the particles; the electrode swells over the charge (T0 -> T6, end of the
    # CV hold) and shrinks again on discharge (T9). (Not scan by scan: at 32 projections the
    # electrode's top is found less reliably, and one timestep can come out a few um off.)
    assert all(s["n_particles"] > 0 for s in steps)
    thick = [s["thickness_um"] for s in steps]
    assert thick[6] > 1.2 * thick[0] and thick[9] < thick[6], thick
    scan_starts, runs = _catalog_runs(data, eid)
    assert sorted(runs, key=lambda t: int(t[1:])) == TIMESTEPS
    for s in steps:
        run = runs[s["timestep"]]
        assert run["start"]["class_fractions"] == s["class_fractions"]
        assert run["start"]["thickness_um"] == s["thickness_um"] == pytest.approx(run["event"]["thickness_um"])
        assert {c: run["event"][f"fraction_{c}"] for c in s["class_fractions"]} == pytest.approx(s["class_fractions"])

    server = MonitorServer(MonitorData(data, min_interval=0.0), port=0)
    server.start_background()
    try:
        dom = Dom(dump_dom(server.url + f"?experiment={eid}", live002["tmp"]))
        shown_files = {}
        for fig in dom.by_class("slice"):
            img = next(e for e in dom.elements if e["tag"] == "img" and e["attrs"].get("alt") == fig["attrs"]["data-name"])
            rel = parse_qs(urlsplit(img["attrs"]["src"]).query)["path"][0]
            with urllib.request.urlopen(server.url.rstrip("/") + "/" + img["attrs"]["src"], timeout=30) as resp:
                shown_files[fig["attrs"]["data-name"]] = (rel, fig["attrs"].get("data-loaded"), resp.read())
    finally:
        server.shutdown()
        server.server_close()

    # Scan markers: one per scan run in the catalog, T0..T9, all successful.
    markers = dom.by_class("scan-marker")
    assert [m["attrs"]["data-label"] for m in markers] == [d["timestep"] for d in scan_starts] == TIMESTEPS
    assert {m["attrs"]["data-status"] for m in markers} == {"success"}
    # The two noise scans share a time: their labels are stacked, not drawn over each other.
    label_at = {e["text"]: (e["attrs"]["x"], e["attrs"]["y"]) for e in dom.by_class("scan-label")}
    assert label_at["T8"] != label_at["T9"]
    assert dom.by_id("state")["text"] == "done" and dom.by_id("scans-done")["text"] == "10"
    # Class fractions and thickness per timestep, as stored (the page prints 3 and 2 decimals).
    rows = dom.by_class("fraction-row")
    assert [r["attrs"]["data-timestep"] for r in rows] == TIMESTEPS
    classes = list(steps[0]["class_fractions"])
    cells = dom.by_class("fraction")
    assert len(cells) == len(classes) * len(steps)
    for i, cell in enumerate(cells):
        step = steps[i // len(classes)]
        assert cell["attrs"]["data-class"] == classes[i % len(classes)]
        assert cell["text"] == f"{step['class_fractions'][cell['attrs']['data-class']]:.3f}"
    assert [e["text"] for e in dom.by_class("thickness")] == [f"{t:.2f} um" for t in thick]
    # The latest slices: T9's three orthogonal slices, the files on disk, loaded by the browser.
    assert dom.by_id("slices-label")["text"] == "T9"
    assert list(shown_files) == ["xy", "xz", "yz"]
    with np.load(root / "T9" / "slices.npz") as z:
        arrays = {k: z[k] for k in z.files}
    for name, (rel, loaded, body) in shown_files.items():
        path = root / "T9" / f"slice_{name}.png"
        assert rel == str(path.relative_to(data)) and body == path.read_bytes()
        width, height = _png_size(path)
        assert loaded == f"{width}x{height}"
        assert (height, width) == arrays[name].shape
    assert not dom.by_class("no-analysis")


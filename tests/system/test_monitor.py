"""The monitor page in a real headless Chromium, `tomocycle run --monitor`, and replay (docs/monitor.md).

One data directory holds two experiments: a short protocol run in-process (three scans), during
which the page is loaded in the browser at the start of scan T1, and a protocol that faults at
once, run through the CLI with ``--monitor``. The browser's DOM after the page's script ran is
checked against the catalog and a fixture analysis summary written in the live pipeline's layout.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from controller.monitor import MonitorServer, png_bytes
from controller.monitor_data import MonitorData
from tests.system.browser import Dom as _Dom
from tests.system.browser import dump_dom
from tests.system.browser import need_browser as _need_browser
from tests.system.operando_util import runs_of, write_protocol

pytestmark = [pytest.mark.system]

STEPS = """\
  - {do: scan, label: pristine}
  - do: Charge at C/3 until 4.3 V or 30 minutes
    label: cc
    on: {30 minutes: scan then next}
  - {do: Rest for 10 minutes, label: rest}
  - {do: scan, label: end}
"""
FAULT_STEPS = """\
  - {do: scan, label: pristine}
  - {do: Charge at C/3 until 4.3 V, label: cc}
"""


class _LiveCheck:
    """Loads the page in the browser when scan T1 starts, while the experiment runs."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.url, self.tmp, self.dom = url, tmp, None

    def configure(self, RE) -> None:
        RE.subscribe(self, "start")

    def __call__(self, name: str, doc: dict) -> None:
        if doc.get("timestep") == "T1" and self.dom is None:
            self.dom = _Dom(dump_dom(self.url, self.tmp, budget_ms=3000))


@pytest.fixture(scope="module")
def site(tmp_path_factory, _catalog_template) -> dict[str, Any]:
    """Two experiments in one data directory, a monitor serving it, and what the browser saw live."""
    from controller.experiment import run_protocol

    _need_browser()
    tmp = tmp_path_factory.mktemp("monitor")
    data = tmp / "data"
    data.mkdir()
    shutil.copy(_catalog_template, data / "catalog.db")
    server = MonitorServer(MonitorData(data, min_interval=0.0), port=0)
    server.start_background()
    live = _LiveCheck(server.url, tmp)
    result = run_protocol(write_protocol(tmp, STEPS), data_dir=data, progress=False, handle_sigint=False,
                          configure_engine=live.configure)
    assert result.ok and [s.label for s in result.scans] == ["T0", "T1", "T2"]
    # The second experiment faults at its first polls (OCV 2.98 V under the 3.5 V floor), via the CLI.
    fault_protocol = write_protocol(tmp, FAULT_STEPS, name="fault", vmin="3.5 V")
    cli = subprocess.run([sys.executable, "-m", "controller.cli", "run", str(fault_protocol), "--sim", "--data",
                          str(data), "--monitor", "--monitor-port", "0"],
                         capture_output=True, text=True, timeout=240, cwd=Path(__file__).resolve().parents[2])
    ids = [e["id"] for e in server.data.experiments()]
    yield {"tmp": tmp, "data": data, "server": server, "live": live.dom, "result": result, "cli": cli,
           "ok_id": result.experiment_id, "fault_id": [i for i in ids if i != result.experiment_id][0]}
    server.shutdown()
    server.server_close()


def _write_analysis(data: Path, experiment_id: str) -> dict[str, Any]:
    """An analysis summary in the live pipeline's layout (docs/live.md), with its slice files."""
    folder = data / "analysis" / experiment_id
    (folder / "slices").mkdir(parents=True)
    rng = np.random.default_rng(3)
    shapes = {"xy": (24, 32), "xz": (16, 32), "yz": (16, 24)}
    slices = {}
    for name, shape in shapes.items():
        if name == "yz":  # one as a numpy file, which the monitor renders
            np.savez(folder / "slices" / f"T2_{name}.npz", slice=rng.random(shape))
            slices[name] = f"slices/T2_{name}.npz"
        else:
            (folder / "slices" / f"T2_{name}.png").write_bytes(png_bytes(rng.random(shape)))
            slices[name] = f"slices/T2_{name}.png"
    entries = []
    for k, (t, v) in enumerate([(0.0, 2.975), (1865.2, 3.875), (3600.0, 3.9)]):
        active = round(0.5 + 0.1 * k, 3)
        entries.append({"timestep": f"T{k}", "time_s": t, "voltage": v,
                        "class_fractions": {"active": active, "deactivated": round(0.3 - 0.05 * k, 3),
                                            "inactive": round(1 - active - (0.3 - 0.05 * k), 3)},
                        "thickness_um": 20.0 + 1.5 * k, "slices": slices if k == 2 else {}})
    (folder / "summary.json").write_text(json.dumps({"experiment_id": experiment_id, "timesteps": entries}))
    return {"entries": entries, "shapes": shapes}


def test_browser_shows_the_running_experiment(site) -> None:
    dom = site["live"]
    assert dom is not None, "the page was not loaded during the run"
    # At the start of T1: T0 is on the curve, T1 has begun, the experiment goes on.
    labels = [m["attrs"]["data-label"] for m in dom.by_class("scan-marker")]
    assert labels[0] == "T0" and set(labels) <= {"T0", "T1"}
    assert dom.by_id("state")["text"] in ("scan_rest", "scanning")
    assert dom.by_id("finished")["text"] == ""
    assert "T1" in dom.by_id("next-scan")["text"]
    assert dom.by_id("step")["text"].startswith("step 2 [cc]")
    assert dom.by_class("segment"), "no voltage curve drawn"


def test_browser_shows_scans_state_and_analysis_of_a_finished_experiment(site) -> None:
    data, eid = site["data"], site["ok_id"]
    fixture = _write_analysis(data, eid)
    dom = _Dom(dump_dom(site["server"].url + f"?experiment={eid}", site["tmp"]))
    _, scan_runs = runs_of(data, eid)
    markers = dom.by_class("scan-marker")
    assert len(markers) == len(scan_runs) == 3
    assert [m["attrs"]["data-label"] for m in markers] == [r.metadata["start"]["timestep"] for r in scan_runs]
    assert [e["text"] for e in dom.by_class("scan-label")] == ["T0", "T1", "T2"]
    assert {m["attrs"]["data-status"] for m in markers} == {"success"}
    assert dom.by_id("state")["text"] == "done"
    assert dom.by_id("scans-done")["text"] == "3"
    assert [e["text"] for e in dom.by_class("alarm")] == []
    # The curve is coloured by every state the experiment went through.
    assert {e["attrs"]["data-state"] for e in dom.by_class("segment")} >= {"charging", "resting", "scanning", "done"}
    # Class fractions and thickness, as the summary has them.
    rows = dom.by_class("fraction-row")
    assert [r["attrs"]["data-timestep"] for r in rows] == ["T0", "T1", "T2"]
    cells = [e for e in dom.by_class("fraction")]
    shown = {(c["attrs"]["data-class"], i // 3): float(c["text"]) for i, c in enumerate(cells)}
    for k, entry in enumerate(fixture["entries"]):
        for cls, value in entry["class_fractions"].items():
            assert shown[(cls, k)] == pytest.approx(value, abs=5e-4)
    assert [e["text"] for e in dom.by_class("thickness")] == [f"{e['thickness_um']:.2f} um" for e in fixture["entries"]]
    # The latest three orthogonal slices, loaded by the browser at their own sizes (the npz rendered).
    figures = dom.by_class("slice")
    assert [f["attrs"]["data-name"] for f in figures] == ["xy", "xz", "yz"]
    for f in figures:
        rows_, cols = fixture["shapes"][f["attrs"]["data-name"]]
        assert f["attrs"].get("data-loaded") == f"{cols}x{rows_}"
    assert dom.by_id("slices-label")["text"] == "T2"
    assert not dom.by_class("no-analysis")
    # While the consumer previews the next scan, its slices replace the last analysed ones.
    folder = data / "analysis" / eid
    (folder / "T3").mkdir()
    for name, shape in fixture["shapes"].items():
        (folder / "T3" / f"preview_{name}.png").write_bytes(png_bytes(np.ones((shape[0] + 1, shape[1]))))
    summary = json.loads((folder / "summary.json").read_text())
    summary["live"] = {"timestep": "T3", "projections": 40,
                       "slices": {n: f"T3/preview_{n}.png" for n in fixture["shapes"]}}
    (folder / "summary.json").write_text(json.dumps(summary))
    dom = _Dom(dump_dom(site["server"].url + f"?experiment={eid}", site["tmp"]))
    assert dom.by_id("slices-label")["text"] == "T3 (live, 40 projections so far)"
    for f in dom.by_class("slice"):
        rows_, cols = fixture["shapes"][f["attrs"]["data-name"]]
        assert f["attrs"].get("data-loaded") == f"{cols}x{rows_ + 1}"


def test_browser_shows_alarms_and_no_analysis_of_a_faulted_experiment(site) -> None:
    eid = site["fault_id"]
    dom = _Dom(dump_dom(site["server"].url + f"?experiment={eid}", site["tmp"]))
    ec, _ = runs_of(site["data"], eid)
    messages = [str(m) for m in ec["alarms"].read()["message"].values]
    assert messages and "voltage" in messages[0]
    shown = [e["text"] for e in dom.by_class("alarm")]
    assert [s.split("] ", 1)[1] for s in shown] == messages
    assert dom.by_id("state")["text"] == "fault"
    assert [e["text"] for e in dom.by_class("no-analysis")] == ["no analysis yet", "no analysis yet"]
    # Both experiments are offered.
    options = [e["attrs"]["value"] for e in dom.elements if e["tag"] == "option"]
    assert set(options) == {site["ok_id"], eid}


def test_run_prints_status_lines_and_serves_the_monitor(site) -> None:
    cli = site["cli"]
    assert cli.returncode == 1, cli.stderr[-3000:]  # the protocol faulted, as designed
    assert re.search(r"tomocycle monitor: http://127\.0\.0\.1:\d+/", cli.stderr)
    assert "ALARM: " in cli.stderr
    status = [line for line in cli.stderr.splitlines() if line.startswith("status: ")]
    assert status and re.match(r"status: cell \d+:\d\d:\d\d of <=10:00:00 \| step .* \| scans \d+ \| "
                               r"\d\.\d{4} V .*A \| wall", status[-1])
    assert "final state:  fault" in cli.stdout  # the summary stays on stdout
    assert "status:" not in cli.stdout


def test_a_token_is_required_off_loopback(site) -> None:
    server = MonitorServer(site["server"].data, host="127.0.0.2", port=0)
    server.start_background()
    try:
        assert server.token and f"token={server.token}" in server.url
        base = f"http://127.0.0.2:{server.server_address[1]}"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + "/api/experiments", timeout=30)
        err.value.close()
        assert err.value.code == 403
        with urllib.request.urlopen(f"{base}/api/experiments?token={server.token}", timeout=30) as resp:
            assert {e["id"] for e in json.loads(resp.read())} == {site["ok_id"], site["fault_id"]}
        # Loopback needs none; files outside the analysis folder are never served.
        plain = f"http://127.0.0.1:{site['server'].server_address[1]}"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(plain + "/api/file?path=../../etc/passwd", timeout=30)
        err.value.close()
        assert err.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_replay_to_a_new_data_dir_and_over_0mq(site) -> None:
    import pickle
    import threading

    import zmq
    from bluesky.callbacks.zmq import Proxy

    from controller.replay import replay_documents

    data, eid = site["data"], site["ok_id"]
    proxy = Proxy(None, None)  # bluesky's 0MQ proxy on random ports, as a live consumer would use
    in_port, out_port = (int(a.rsplit(":", 1)[1]) for a in (proxy.in_port, proxy.out_port))
    threading.Thread(target=proxy.start, daemon=True).start()
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"tcp://127.0.0.1:{out_port}")
    sub.setsockopt(zmq.RCVHWM, 0)
    try:
        out = site["tmp"] / "replayed"
        result = replay_documents(data, eid[:6], publish=f"127.0.0.1:{in_port}", to=out)
        received = []
        while sub.poll(timeout=2000):
            _, name, payload = sub.recv().split(b" ", 2)
            received.append((name.decode(), pickle.loads(payload)))
    finally:
        sub.close(linger=0)
        ctx.term()
    ec, scans = runs_of(data, eid)
    assert result.runs == 1 + len(scans)
    names = [n for n, _ in received]
    assert names.count("start") == names.count("stop") == result.runs
    assert sum(len(d["seq_num"]) for n, d in received if n == "event_page") == \
        len(ec["primary"].read()["cell_time"]) + sum(len(r["primary"].read()["seq_num"]) for r in scans
                                                    if "seq_num" in r["primary"].read())
    # What the monitor shows of the replayed copy is what it shows of the original.
    a, b = site["server"].data.snapshot(eid), MonitorData(out).snapshot(eid)
    for key in ("curve", "scans", "alarms", "current", "polls", "finished"):
        assert a[key] == b[key], key
    assert b["replay_of"].endswith(eid)
    # Frames went along: the replayed scan reads back.
    from controller.catalog import open_catalog

    copy = open_catalog(out, create=False)
    frames = copy[scans[-1].metadata["start"]["uid"]]["primary"]["detector_image"].read()
    assert frames.shape == scans[-1]["primary"]["detector_image"].read().shape


def test_replay_paces_by_the_recording_at_the_chosen_speed(site) -> None:
    from controller.replay import replay_documents

    clock = {"t": 0.0}
    sleeps: list[float] = []

    def fake_sleep(s: float) -> None:
        sleeps.append(s)
        clock["t"] += s

    got: list[tuple[str, dict]] = []
    result = replay_documents(site["data"], site["ok_id"], speed=4.0, sinks=[lambda n, d: got.append((n, d))],
                              sleep=fake_sleep, clock=lambda: clock["t"])
    assert sleeps and sum(sleeps) == pytest.approx(result.span_s / 4.0, rel=1e-9)
    times = [d["time"] for n, d in got if "time" in d and n in ("start", "stop", "descriptor")]
    assert result.span_s >= max(times) - min(times) - 1e-9


def test_replay_sim_reruns_the_protocol_with_the_same_scans(site) -> None:
    from controller.replay import replay_sim

    original = site["result"]
    again = replay_sim(site["data"], original.experiment_id, to=site["tmp"] / "rerun", progress=False,
                       handle_sigint=False)
    assert again.ok and again.experiment_id != original.experiment_id
    assert [(s.label, s.step) for s in again.scans] == [(s.label, s.step) for s in original.scans]
    np.testing.assert_allclose([s.time_s - again.t0 for s in again.scans],
                               [s.time_s - original.t0 for s in original.scans], atol=1e-6)
    np.testing.assert_allclose([s.voltage for s in again.scans], [s.voltage for s in original.scans], atol=1e-9)

"""Pure parts of the monitor, the replay and the run's status line: next scan, decimation, PNG, analysis."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from controller.experiment_progress import status_line, step_time_limit
from controller.monitor import is_loopback, png_bytes
from controller.monitor_data import decimate, next_scan, read_analysis
from controller.protocol import parse_protocol
from controller.replay import paged

PROTOCOL = """\
name: unit
cell: {preset: si-nmc811-full, capacity: 0.033 mAh}
poll_period: 10 s
ocv_before_scan: 1 minute
scan: {projections: 8, range: 180, exposure: 20 ms, flats: 2, darks: 2, preset: quick}
safety: {voltage: [0 V, 4.4 V], max_current: 1C, max_duration: 10 hours}
steps:
  - {do: scan, label: pristine}
  - do: Charge at C/3 until 4.3 V or 30 minutes
    label: cc
    on: {30 minutes: scan then repeat, 4.3 V: scan then next}
  - {do: Rest for 10 minutes, label: rest}
  - {do: scan, label: end}
  - schedule: scan every 20 minutes
    steps:
      - {do: Discharge at C/3 until 3 V, label: dis}
"""


@pytest.fixture(scope="module")
def protocol():
    return parse_protocol(PROTOCOL, source="unit.yaml")


def _polls(rows: list[tuple[float, str, str]]) -> dict[str, np.ndarray]:
    t, state, step = zip(*rows)
    return {"cell_time": np.array(t, float), "state": np.array(state), "step": np.array(step)}


def test_next_scan_from_a_time_limit_counts_from_the_step_restart(protocol) -> None:
    polls = _polls([(0, "scan_rest", "1"), (60, "scanning", "1"), (70, "charging", "2"), (1870, "scan_rest", "2"),
                    (1930, "scanning", "2"), (1940, "charging", "2"), (2000, "charging", "2")])
    nxt = next_scan(protocol, polls, 2)
    assert nxt["label"] == "T2"
    assert nxt["eta_s"] == pytest.approx(1940 + 1800)  # the step restarted after T1 ("scan then repeat")
    assert "0:32:20" not in nxt["text"] and "1:02:20" in nxt["text"] and "when 4.3 V" in nxt["text"]


def test_next_scan_during_a_scan_a_rest_and_at_the_end(protocol) -> None:
    assert next_scan(protocol, _polls([(0, "scan_rest", "1")]), 0)["text"].startswith("T0 under way")
    rest = next_scan(protocol, _polls([(0, "resting", "3")]), 3)
    assert rest["text"] == "T3 at step 4 [end], after this step" and rest["eta_s"] is None
    assert next_scan(protocol, _polls([(0, "resting", "3"), (9, "done", "")]), 4) is None
    assert next_scan(None, _polls([(0, "charging", "2")]), 1) is None


def test_next_scan_in_a_schedule_block(protocol) -> None:
    polls = _polls([(0, "resting", "3"), (100, "discharging", "5.1"), (500, "discharging", "5.1")])
    nxt = next_scan(protocol, polls, 4)
    assert nxt["eta_s"] == pytest.approx(100 + 1200) and "schedule of step 5" in nxt["text"]


def test_decimate_keeps_flagged_rows_and_the_last() -> None:
    keep = np.zeros(10_000, bool)
    keep[[3, 4, 7777]] = True
    idx = decimate(10_000, keep, max_points=100)
    assert {3, 4, 7777, 9999} <= set(idx.tolist()) and len(idx) <= 105
    assert np.all(np.diff(idx) > 0)
    assert decimate(0, np.zeros(0, bool)).size == 0


def _png_pixels(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(tag + body) & 0xFFFFFFFF
        chunks[tag] = body
        pos += 12 + n
    w, h = struct.unpack(">II", chunks[b"IHDR"][:8])
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(h, w + 1)
    assert np.all(raw[:, 0] == 0)
    return raw[:, 1:]


def test_png_bytes_encodes_a_ramp() -> None:
    ramp = np.tile(np.linspace(0, 1, 201), (3, 1))
    pixels = _png_pixels(png_bytes(ramp))
    assert pixels.shape == (3, 201)
    assert pixels[0, 0] == 0 and pixels[0, -1] == 255 and np.all(np.diff(pixels[0].astype(int)) >= 0)
    with pytest.raises(ValueError):
        png_bytes(np.zeros((2, 2, 2)))


def test_read_analysis_takes_a_list_or_a_dict_and_only_files_inside(tmp_path: Path) -> None:
    folder = tmp_path / "analysis" / "abc"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(png_bytes(np.eye(4)))
    outside = tmp_path.parent / "outside.png"
    outside.write_bytes(b"x")
    entries = [{"timestep": "T0", "time_s": 0, "voltage": 3.0, "class_fractions": {"active": 1.0},
                "thickness_um": 10.0, "slices": ["a.png", str(outside), "missing.png"]},
               {"timestep": "T1", "time_s": 60, "voltage": "nan", "class_fractions": {"active": 0.5, "inactive": 0.5},
                "thickness_um": None, "slices": []}]
    (folder / "summary.json").write_text(json.dumps(entries))
    got = read_analysis(tmp_path, "abc")
    assert got["classes"] == ["active", "inactive"]
    assert [{k: s[k] for k in ("name", "path")} for s in got["latest_slices"]] == [{"name": "a", "path": "analysis/abc/a.png"}]
    assert got["live"] is None
    assert got["timesteps"][1]["voltage"] is None and got["timesteps"][1]["thickness_um"] is None
    (folder / "summary.json").write_text(json.dumps({"timesteps": entries}))
    assert read_analysis(tmp_path, "abc")["timesteps"][0]["class_fractions"] == {"active": 1.0}
    assert read_analysis(tmp_path, "none") is None


def test_read_analysis_shows_the_three_orthogonal_slices_not_the_arrays_file(tmp_path: Path) -> None:
    # The live pipeline's entries name slices.npz beside the PNGs (docs/live.md).
    folder = tmp_path / "analysis" / "abc" / "T0"
    folder.mkdir(parents=True)
    names = {"npz": "slices.npz", "yz": "slice_yz.png", "xy": "slice_xy.png", "xz": "slice_xz.png"}
    for name in names.values():
        (folder / name).write_bytes(b"x")
    entry = {"timestep": "T0", "class_fractions": {}, "slices": {k: f"T0/{v}" for k, v in names.items()}}
    (folder.parent / "summary.json").write_text(json.dumps({"timesteps": [entry]}))
    got = read_analysis(tmp_path, "abc")["latest_slices"]
    assert [(s["name"], s["path"]) for s in got] == [(n, f"analysis/abc/T0/slice_{n}.png") for n in ("xy", "xz", "yz")]


def test_read_analysis_offers_the_live_preview_with_a_version_per_rewrite(tmp_path: Path) -> None:
    import os

    folder = tmp_path / "analysis" / "abc" / "T3"
    folder.mkdir(parents=True)
    for n in ("xy", "xz", "yz"):
        (folder / f"preview_{n}.png").write_bytes(png_bytes(np.eye(4)))
    live = {"timestep": "T3", "projections": 40, "frames_read": 45,
            "slices": {"npz": "T3/preview_slices.npz", **{n: f"T3/preview_{n}.png" for n in ("xy", "xz", "yz")}}}
    (folder.parent / "summary.json").write_text(json.dumps({"timesteps": [], "live": live}))
    got = read_analysis(tmp_path, "abc")["live"]
    assert got["timestep"] == "T3" and got["projections"] == 40
    assert [s["name"] for s in got["slices"]] == ["xy", "xz", "yz"]  # the missing npz is not offered
    before = got["slices"][0]["version"]
    os.utime(folder / "preview_xy.png", ns=(before + 10**9, before + 10**9))  # the consumer rewrote it
    assert read_analysis(tmp_path, "abc")["live"]["slices"][0]["version"] == before + 10**9


def test_status_line_and_step_limits(protocol) -> None:
    assert step_time_limit(protocol, "2") == 1800.0
    assert step_time_limit(protocol, "1") is None and step_time_limit(protocol, "") is None
    line = status_line(elapsed_s=3725, max_s=36000, state="charging", step="2", label="cc", step_elapsed_s=61,
                       step_limit_s=1800, scans=3, voltage=3.95371, current=1.1e-5, wall_s=12)
    assert line == ("cell 1:02:05 of <=10:00:00 | step 2 [cc] charging 0:01:01 of <=0:30:00 | scans 3 | "
                    "3.9537 V 11 uA | wall 0:00:12")


def test_loopback_hosts() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("127.0.0.2") and not is_loopback("example")


def test_paged_groups_events_of_one_stream_due_together() -> None:
    def ev(t: float, desc: str, i: int) -> tuple[float, str, dict]:
        return t, "event", {"descriptor": desc, "time": t, "uid": f"{desc}{i}", "seq_num": i, "data": {"x": i},
                            "timestamps": {"x": t}, "filled": {}}

    docs = [(0.0, "start", {"time": 0.0}), ev(1.0, "a", 1), ev(1.01, "a", 2), ev(1.02, "b", 1), ev(5.0, "a", 3),
            (6.0, "stop", {"time": 6.0})]
    fast = [(n, d.get("seq_num")) for _, n, d in paged(docs, speed=0)]
    assert fast == [("start", None), ("event_page", [1, 2]), ("event_page", [1]), ("event_page", [3]), ("stop", None)]
    slow = [(n, d.get("seq_num")) for _, n, d in paged(docs, speed=0.1)]  # 5 ms window: each event alone
    assert slow == [("start", None), ("event_page", [1]), ("event_page", [2]), ("event_page", [1]),
                    ("event_page", [3]), ("stop", None)]

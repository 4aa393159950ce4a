"""tomo_scan and radiography under a RunEngine on the simulated beamline: order, keys, angles."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from devices.beamline import make_sim_beamline
from plans.tomo import interlaced_angles, radiography, tomo_scan
from plans.validate import ScanParameterError


@pytest.fixture
def beamline(tmp_path):
    return make_sim_beamline("quick", tmp_path)


def _run(RE, plan):
    """Run ``plan``; return (messages, documents)."""
    msgs, docs = [], []
    RE.msg_hook = msgs.append
    RE(plan, lambda name, doc: docs.append((name, doc)))
    RE.msg_hook = None
    return msgs, docs


def _events(docs, key):
    return [doc["data"][key] for name, doc in docs if name == "event"]


def test_darks_then_flats_then_projections_then_end_flats(RE, beamline):
    b = beamline
    _, docs = _run(RE, tomo_scan(b.detector, b.rotation, b.shutter, b.sample, projections=12,
                                 darks=3, flats=2, flats_at_end=True, exposure=0.01))
    keys = _events(docs, "detector_image_key")
    assert keys == [2] * 3 + [1] * 2 + [0] * 12 + [1] * 2
    angles = np.array(_events(docs, "rotation"))[5:17]
    np.testing.assert_allclose(angles, np.arange(12) * 15.0)
    start = next(doc for name, doc in docs if name == "start")
    assert start["plan_name"] == "tomo_scan" and start["num_points"] == 19
    assert start["plan_args"]["projections"] == 12 and start["hints"]["dimensions"][0][0] == ["rotation"]
    assert next(doc for name, doc in docs if name == "stop")["exit_status"] == "success"


def test_each_frame_is_what_its_key_says(RE, beamline):
    """Darks are taken shutter closed, flats with the sample out, projections with it in."""
    b = beamline
    _run(RE, tomo_scan(b.detector, b.rotation, b.shutter, b.sample, projections=6, darks=2,
                       flats=2, exposure=0.02))
    with h5py.File(b.detector.last_file, "r") as f:
        data = f["/entry/instrument/detector/data"][()].astype(float)
        keys = f["/entry/instrument/detector/image_key"][()]
    dark, flat, proj = (data[keys == k].mean() for k in (2, 1, 0))
    assert dark < 0.05 * flat  # dark level 100 counts vs ~2e4 open beam
    assert dark < proj < 0.98 * flat  # the sample absorbs
    # The shutter is closed again at the end and the sample back in the beam.
    assert b.shutter.state.get() == "closed" and b.sample.position == b.sample.in_position


def test_message_order_shutter_sample_and_rotation(RE, beamline):
    b = beamline
    msgs, _ = _run(RE, tomo_scan(b.detector, b.rotation, b.shutter, b.sample, projections=4,
                                 darks=1, flats=1, exposure=0.01))
    steps = [(m.command, getattr(m.obj, "name", None), m.args[0] if m.args else None)
             for m in msgs if m.command in ("set", "trigger", "stage", "unstage", "open_run", "close_run")]
    names = [(c, o) for c, o, _ in steps]
    assert names[0] == ("stage", "detector") and names[1][0] == "open_run"
    i_close = steps.index(("set", "shutter", "close"))
    i_dark = names.index(("trigger", "detector"))
    i_open = steps.index(("set", "shutter", "open"))
    i_out = steps.index(("set", "sample_x", b.sample.out_position))
    assert i_close < i_dark < i_open < i_out
    rotation_moves = [a for c, o, a in steps if (c, o) == ("set", "rotation")]
    assert rotation_moves == [0.0, 45.0, 90.0, 135.0]
    assert names.index(("close_run", None)) < names.index(("unstage", "detector"))
    assert steps[-1] == ("set", "shutter", "close")  # the finalizer closes it whatever happened


@pytest.mark.parametrize("projections,subsets,rng,expected_starts", [
    (300, 3, 180.0, [0.0, 0.6, 1.2]),       # 004: 3 x 100 angles over 180 degrees
    (8, 2, 360.0, [0.0, 45.0]),
])
def test_interlaced_angles_exactly_as_specified(projections, subsets, rng, expected_starts):
    angles = interlaced_angles(projections, rng, subsets)
    per = projections // subsets
    step = rng / per
    blocks = angles.reshape(subsets, per)
    np.testing.assert_allclose(blocks[:, 0], expected_starts)
    np.testing.assert_allclose(np.diff(blocks, axis=1), step)
    # together the subsets form a regular grid of step / subsets, with no angle twice
    np.testing.assert_allclose(np.sort(angles), np.arange(projections) * step / subsets, atol=1e-9)


def test_interlaced_scan_records_angles_in_acquisition_order(RE, beamline):
    b = beamline
    _, docs = _run(RE, tomo_scan(b.detector, b.rotation, b.shutter, b.sample, projections=9,
                                 interlaced=3, darks=0, flats=0, exposure=0.01))
    np.testing.assert_allclose(_events(docs, "rotation"), interlaced_angles(9, 180.0, 3))
    with h5py.File(b.detector.last_file, "r") as f:
        np.testing.assert_allclose(f["/entry/sample/rotation_angle"][()], interlaced_angles(9, 180.0, 3))


def test_stream_documents_describe_frames(RE, beamline):
    b = beamline
    _, docs = _run(RE, tomo_scan(b.detector, b.rotation, b.shutter, b.sample, projections=3,
                                 darks=1, flats=1, exposure=0.01))
    desc = next(doc for name, doc in docs if name == "descriptor")["data_keys"]["detector_image"]
    assert desc["dtype_numpy"] == np.dtype(np.uint16).str
    assert desc["shape"] == list(b.detector.source.frame_shape) and desc["external"] == "STREAM:"
    resources = [doc for name, doc in docs if name == "stream_resource"]
    datums = [doc for name, doc in docs if name == "stream_datum"]
    assert len(resources) == 1 and resources[0]["parameters"]["dataset"] == "/entry/instrument/detector/data"
    assert [(d["indices"]["start"], d["indices"]["stop"]) for d in datums] == [(i, i + 1) for i in range(5)]


def test_radiography_is_timed_on_the_cell_clock(RE, beamline):
    b = beamline
    t0 = b.scene.clock.now()
    _, docs = _run(RE, radiography(b.detector, b.shutter, b.sample, b.cell_clock, images=4, period=60.0,
                                   exposure=0.05, flats=1, readables=[b.potentiostat]))
    keys = _events(docs, "detector_image_key")
    assert keys == [1, 0, 0, 0, 0]
    times = np.array(_events(docs, "cell_clock_time"))[1:]
    np.testing.assert_allclose(np.diff(times), 60.0, atol=0.2)
    # three periods, the last exposure, and the sample's trips out and back for the flat (2 x 2 s)
    assert b.scene.clock.now() - t0 == pytest.approx(3 * 60 + 0.05 + 2 * 0.05 + 4.0, abs=0.5)
    assert {tuple(doc["data"].keys()) >= ("potentiostat_voltage",) for name, doc in docs if name == "event"}


@pytest.mark.parametrize("kwargs,name", [
    ({"projections": 0}, "projections"), ({"exposure": -1.0}, "exposure"),
    ({"angle_range": 400.0}, "angle_range"), ({"darks": -2}, "darks"),
    ({"interlaced": 5, "projections": 4}, "interlaced"),
])
def test_impossible_scans_are_refused_before_anything_moves(beamline, kwargs, name):
    b = beamline
    args = {"projections": 10, **kwargs}
    with pytest.raises(ScanParameterError, match=name):
        list(tomo_scan(b.detector, b.rotation, b.shutter, b.sample, **args))
    assert b.detector.last_file is None

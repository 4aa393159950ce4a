"""Beamline configuration files: the shipped example parses; mistakes name the file and the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devices.beamline_config import BeamlineConfigError, load_beamline_config, parse_beamline_config, seconds

EXAMPLE = Path(__file__).resolve().parents[2] / "beamlines" / "sim-serial-epics.yaml"


def test_shipped_example_parses():
    config = load_beamline_config(EXAMPLE)
    assert config.simulate and config.connect_timeout_s == 2.0
    assert {k: d.backend for k, d in config.devices.items()} == {
        "potentiostat": "serial", "rotation": "epics", "sample": "epics", "shutter": "sim", "detector": "sim"}
    assert config.devices["rotation"].options["limits"] == [-720, 720]


def test_omitted_devices_are_simulated():
    config = parse_beamline_config({"devices": {"rotation": {"backend": "epics", "prefix": "X:ROT",
                                                             "limits": [0, 360]}}})
    assert config.devices["potentiostat"].backend == "sim" and not config.simulate


@pytest.mark.parametrize("data, message", [
    ({"devices": {}, "colour": 1}, "unknown key(s) colour"),
    ({"devices": {"laser": {"backend": "sim"}}}, "unknown device(s) laser"),
    ({"devices": {"shutter": {"backend": "epics"}}}, "devices.shutter: backend 'epics' is not available"),
    ({"devices": {"potentiostat": {"backend": "serial"}}}, "devices.potentiostat (serial) needs port"),
    ({"devices": {"potentiostat": {"backend": "serial", "port": "/dev/x", "baud": 9600}}},
     "unknown option(s) baud"),
    ({"devices": {"potentiostat": {"backend": "serial", "port": "/dev/x", "terminator": "NL"}}},
     "terminator 'NL'"),
    ({"devices": {"rotation": {"backend": "epics", "prefix": "R"}}}, "needs limits"),
    ({"devices": {"rotation": {"backend": "epics", "prefix": "R", "limits": [5, -5]}}}, "low < high"),
    ({"devices": {"rotation": "epics"}}, "devices.rotation needs a 'backend'"),
])
def test_mistakes_name_the_file_and_the_key(data, message):
    with pytest.raises(BeamlineConfigError, match=r"beamline config cfg.yaml: .*" + re.escape(message)):
        parse_beamline_config(data, source="cfg.yaml")


def test_durations():
    assert (seconds(2, "x"), seconds("200 ms", "x"), seconds("1.5 s", "x")) == (2.0, 0.2, 1.5)
    with pytest.raises(BeamlineConfigError, match="expected seconds"):
        seconds("soon", "x")

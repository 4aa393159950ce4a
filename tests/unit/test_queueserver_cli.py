"""``tomocycle queueserver``: the start-re-manager command it builds, and bad input in one line."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from controller.cli import main
from controller.queueserver import PERMISSIONS, STARTUP_MODULE


def test_print_shows_the_profile_on_loopback_and_touches_nothing(tmp_path: Path, capsys) -> None:
    pytest.importorskip("bluesky_queueserver")
    data = tmp_path / "data"
    assert main(["queueserver", "--data", str(data), "--protocol", "002", "--redis", "127.0.0.1:7000",
                 "--print"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    env = dict(line.split("=", 1) for line in lines[:-1])
    assert env["TOMOCYCLE_DATA"] == str(data.resolve())
    assert env["TOMOCYCLE_PROTOCOL"].endswith("002-cccv-timeouts.yaml")
    cmd = shlex.split(lines[-1])
    assert Path(cmd[0]).name == "start-re-manager"
    args = dict(zip(cmd[1::2], cmd[2::2]))
    assert args["--startup-module"] == STARTUP_MODULE
    assert Path(args["--user-group-permissions"]) == PERMISSIONS and PERMISSIONS.is_file()
    assert args["--existing-plans-devices"] == str(data.resolve() / "queueserver" / "existing_plans_and_devices.yaml")
    assert args["--redis-addr"] == "127.0.0.1:7000"
    # Both 0MQ sockets on loopback unless asked otherwise.
    assert args["--zmq-control-addr"].startswith("tcp://127.0.0.1:")
    assert args["--zmq-info-addr"].startswith("tcp://127.0.0.1:")
    assert not data.exists()


@pytest.mark.parametrize("argv, words", [
    (["--protocol", "nope"], "protocol 'nope': no such file"),
    (["--beamline", "missing.yaml"], "--beamline missing.yaml: no such file"),
])
def test_bad_input_is_one_line(tmp_path: Path, capsys, argv: list[str], words: str) -> None:
    assert main(["queueserver", "--data", str(tmp_path / "d"), *argv, "--print"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err

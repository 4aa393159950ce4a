"""tomocycle under bluesky-queueserver: a startup module, user group permissions, the command line.

``start-re-manager --startup-module controller.queueserver.startup`` builds the beamline (simulated
or configured), opens the data directory's catalog and offers the plans ``tomo_scan`` and
``operando`` to the queue; :func:`manager_command` puts the command line together
(``tomocycle queueserver`` runs it). See docs/queueserver.md.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

#: The permissions file shipped beside this module (every plan and device of the profile).
PERMISSIONS = Path(__file__).with_name("user_group_permissions.yaml")
STARTUP_MODULE = "controller.queueserver.startup"
#: Environment variables the startup module reads (the worker inherits the manager's environment).
ENV_DATA, ENV_PROTOCOL, ENV_BEAMLINE = "TOMOCYCLE_DATA", "TOMOCYCLE_PROTOCOL", "TOMOCYCLE_BEAMLINE"
ENV_SEED, ENV_COARSEN = "TOMOCYCLE_SEED", "TOMOCYCLE_COARSEN"
DEFAULT_CONTROL = "tcp://127.0.0.1:60615"
DEFAULT_INFO = "tcp://127.0.0.1:60625"


class QueueServerError(RuntimeError):
    """bluesky-queueserver is missing or cannot be started as asked."""


def manager_executable() -> str:
    """``start-re-manager`` of this interpreter's environment (else the one on PATH).

    Raises
    ------
    QueueServerError
        If bluesky-queueserver is not installed.
    """
    beside = Path(sys.executable).with_name("start-re-manager")
    found = str(beside) if beside.exists() else shutil.which("start-re-manager")
    if found is None:
        raise QueueServerError("start-re-manager not found: pip install 'tomocycle[queueserver]'")
    return found


def manager_command(data_dir: Path, *, redis: str = "127.0.0.1:6379", control: str = DEFAULT_CONTROL,
                    info: str = DEFAULT_INFO, name_prefix: str = "tomocycle") -> list[str]:
    """The ``start-re-manager`` command line for the tomocycle profile.

    Parameters
    ----------
    data_dir
        The data directory; the list of plans and devices the manager generates goes to
        ``DATA/queueserver/existing_plans_and_devices.yaml``.
    redis
        Redis address (the queue and history live there).
    control, info
        0MQ addresses of the manager's control socket (clients connect here) and of its
        console/info publisher; loopback by default, as bluesky-queueserver's own are all interfaces.
    name_prefix
        Prefix of the Redis keys, so that several managers can share one Redis.
    """
    folder = plans_devices_folder(data_dir)
    return [manager_executable(), "--startup-module", STARTUP_MODULE,
            "--user-group-permissions", str(PERMISSIONS),
            "--existing-plans-devices", str(folder / "existing_plans_and_devices.yaml"),
            "--redis-addr", redis, "--redis-name-prefix", name_prefix,
            "--zmq-control-addr", control, "--zmq-info-addr", info]


def plans_devices_folder(data_dir: Path) -> Path:
    """``DATA/queueserver``: where the manager keeps its list of existing plans and devices."""
    return Path(data_dir).resolve() / "queueserver"


def manager_environment(data_dir: Path, *, protocol: str | None = None, beamline: Path | None = None,
                        seed: int = 0, coarsen: float | None = None) -> dict[str, str]:
    """The environment for ``start-re-manager`` (its worker reads the settings from it)."""
    env = {**os.environ, ENV_DATA: str(Path(data_dir).resolve()), ENV_SEED: str(seed)}
    # The worker imports tomocycle from wherever this interpreter does (a checkout, too).
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    for key, value in ((ENV_PROTOCOL, protocol), (ENV_BEAMLINE, beamline), (ENV_COARSEN, coarsen)):
        if value is not None:
            env[key] = str(Path(value).resolve()) if key == ENV_BEAMLINE else str(value)
    return env

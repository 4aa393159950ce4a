"""Experiment checkpoints: one JSON file per experiment, replaced atomically at every transition.

Layout under a data directory::

    experiments/<experiment id>/protocol.yaml     the protocol text as run
    experiments/<experiment id>/checkpoint.json   controller state, beamline, options, progress

A checkpoint is written with write-to-temporary + fsync + rename, so a crash mid-write leaves
the previous checkpoint intact, never half a file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class CheckpointError(ValueError):
    """No usable checkpoint; the message names the directory or file and what is wrong."""


@dataclass
class CheckpointStore:
    """Reads and writes one experiment's checkpoint.

    Parameters
    ----------
    folder
        ``<data dir>/experiments/<experiment id>``.
    """

    folder: Path

    @property
    def path(self) -> Path:
        return self.folder / "checkpoint.json"

    @property
    def protocol_path(self) -> Path:
        return self.folder / "protocol.yaml"

    def create(self, protocol_text: str, header: dict[str, Any]) -> None:
        """Start a new experiment's folder with its protocol and a first checkpoint."""
        self.folder.mkdir(parents=True, exist_ok=False)
        self.protocol_path.write_text(protocol_text, encoding="utf-8")
        self.write({**header, "created": time.time(), "finished": False})

    def write(self, data: dict[str, Any]) -> None:
        """Replace the checkpoint atomically."""
        tmp = self.path.with_suffix(".json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, allow_nan=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def read(self) -> dict[str, Any]:
        """The checkpoint as written.

        Raises
        ------
        CheckpointError
            If the file is missing or not valid JSON.
        """
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"{self.path}: no checkpoint there") from None
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{self.path}: corrupt checkpoint ({err})") from None

    def update(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the checkpoint and write it; return the new contents."""
        data = {**self.read(), **fields, "updated": time.time()}
        self.write(data)
        return data


def experiments_dir(data_dir: Path) -> Path:
    """Where a data directory keeps its experiments."""
    return Path(data_dir) / "experiments"


def find_resumable(data_dir: Path, experiment_id: str | None = None) -> CheckpointStore:
    """The experiment to resume: the one named, or the most recent unfinished one.

    Raises
    ------
    CheckpointError
        If there is none, or the one named is unknown or already finished.
    """
    root = experiments_dir(data_dir)
    if experiment_id is not None:
        matches = sorted(p for p in root.glob(f"{experiment_id}*") if (p / "checkpoint.json").exists()) \
            if root.is_dir() else []
        if len(matches) != 1:
            raise CheckpointError(f"--data {data_dir}: {'no' if not matches else len(matches)} experiment(s) "
                                  f"match {experiment_id!r}")
        store = CheckpointStore(matches[0])
        if store.read().get("finished"):
            raise CheckpointError(f"experiment {matches[0].name} already finished; nothing to resume")
        return store
    candidates = []
    for folder in root.glob("*") if root.is_dir() else []:
        store = CheckpointStore(folder)
        if store.path.exists():
            data = store.read()
            if not data.get("finished"):
                candidates.append((data.get("updated", data.get("created", 0.0)), store))
    if not candidates:
        raise CheckpointError(f"--data {data_dir}: no unfinished experiment to resume")
    return max(candidates, key=lambda c: c[0])[1]

"""Shipped protocol presets: the papers' protocols as YAML files beside this module.

A data-only package: it reads the files' ``name`` and ``title`` with PyYAML and imports nothing
from tomocycle, so any layer may use it. Parse a preset with
``controller.protocol.load_protocol(preset_path(name))``.
"""

from __future__ import annotations

import pathlib
from importlib import resources

import yaml

__all__ = ["list_presets", "preset_path"]

_SUFFIX = ".yaml"


def _files() -> list[pathlib.Path]:
    root = resources.files(__name__)
    return sorted(pathlib.Path(str(entry)) for entry in root.iterdir()
                  if entry.is_file() and entry.name.endswith(_SUFFIX))


def preset_path(name: str) -> pathlib.Path:
    """Path of the preset called ``name`` (the file name without ``.yaml``).

    Raises
    ------
    ValueError
        When there is no such preset; the message lists the known ones.
    """
    for path in _files():
        if path.stem == name:
            return path
    known = ", ".join(path.stem for path in _files())
    raise ValueError(f"unknown protocol preset '{name}' (known: {known})")


def list_presets() -> list[tuple[str, str]]:
    """``(name, title)`` of every shipped preset, sorted by name."""
    out = []
    for path in _files():
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        out.append((path.stem, str(data.get("title", data.get("name", path.stem)))))
    return out

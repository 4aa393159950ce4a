"""The RunEngine as tomocycle sets it up: catalog writer and terminal progress subscribed."""

from __future__ import annotations

from typing import Any

from bluesky import RunEngine

from controller.catalog import make_writer
from controller.progress import RunProgress


def make_run_engine(client: Any | None, *, progress: bool = True, handle_sigint: bool = True) -> RunEngine:
    """A RunEngine that writes every run to ``client`` (a tiled catalog) and shows progress.

    Parameters
    ----------
    client
        Catalog client from :func:`controller.catalog.open_catalog`, or None to store nothing.
    progress
        Draw a progress bar per run on stderr.
    handle_sigint
        Install bluesky's Ctrl-C handler (pause on first, abort options after); tests turn it off.
    """
    kwargs: dict[str, Any] = {} if handle_sigint else {"context_managers": []}
    engine = RunEngine({}, **kwargs)
    if client is not None:
        engine.subscribe(make_writer(client))
    if progress:
        engine.subscribe(RunProgress())
    return engine

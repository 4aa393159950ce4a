"""``tomocycle replay``: re-emit a stored experiment's documents, or re-run its protocol on the simulator.

Documents come from the catalog (``run.documents()``, the JSON-seq export of bluesky-tiled-plugins),
every run of the experiment merged in time order, and go to any of:

- a 0MQ publisher (``--publish HOST:PORT``, the in-port of a ``bluesky-0MQ-proxy``), so a live
  consumer sees the experiment again as if it ran now;
- a new data directory (``--to DIR``): a TiledWriter stores them, with the protocol and a
  checkpoint header, so ``tomocycle monitor --data DIR`` shows the experiment build up.

Pacing follows the documents' own timestamps, divided by ``speed`` (0: as fast as possible).
Events are sent as event pages: consecutive events of one stream that fall due together.
"""

from __future__ import annotations

import heapq
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlparse

from controller.catalog import open_catalog, prepare_data_dir
from controller.checkpoint import CheckpointError, CheckpointStore, experiments_dir

Sink = Callable[[str, dict[str, Any]], None]
#: Events due within this much wall time of each other go out as one page (s).
PAGE_WINDOW_S = 0.05


@dataclass
class ReplayResult:
    """What a document replay sent."""

    experiment_id: str
    runs: int
    documents: dict[str, int]
    wall_s: float
    span_s: float
    data_dir: Path | None = None


def find_experiment(data_dir: Path, experiment_id: str) -> CheckpointStore:
    """The stored experiment whose id starts with ``experiment_id``.

    Raises
    ------
    CheckpointError
        If none or several match.
    """
    root = experiments_dir(Path(data_dir))
    matches = sorted(p for p in root.glob(f"{experiment_id}*") if (p / "checkpoint.json").exists()) \
        if root.is_dir() else []
    if len(matches) != 1:
        raise CheckpointError(f"--data {data_dir}: {'no' if not matches else len(matches)} experiment(s) "
                              f"match {experiment_id!r}")
    return CheckpointStore(matches[0])


def experiment_runs(client: Any, experiment_id: str) -> list[Any]:
    """The catalog runs of an experiment (electrochemistry and scans), oldest first.

    The analysis runs that a consumer or ``tomocycle analyze`` recorded under the experiment's id
    (``kind: analysis``) are left out: they are results of the documents, not documents of the
    experiment. Replayed, they would stand in the copy's catalog for an analysis that its own
    consumer never made, and that consumer would not record its own.
    """
    from tiled.queries import Key

    runs = [run for run in client.search(Key("start.experiment_id") == experiment_id).values()
            if run.metadata["start"].get("kind") != "analysis"]
    return sorted(runs, key=lambda r: r.metadata["start"]["time"])


def _timed(run: Any, index: int) -> Iterator[tuple[float, int, int, str, dict[str, Any]]]:
    """A run's documents keyed by time, never going back: a document without a time (stream
    resources and datums) or stamped earlier than its predecessor takes the predecessor's time."""
    last = float(run.metadata["start"]["time"])
    for seq, (name, document) in enumerate(run.documents()):
        # The client hands out read-only documents; writers and publishers copy and amend them.
        doc = document.to_dict() if hasattr(document, "to_dict") else dict(document)
        t = doc.get("time")
        last = max(last, float(t)) if t is not None else last
        yield last, index, seq, name, doc


def merged_documents(runs: Iterable[Any]) -> Iterator[tuple[float, str, dict[str, Any]]]:
    """The documents of several runs, merged by time (each run keeps its own order)."""
    streams = [_timed(run, i) for i, run in enumerate(runs)]
    for t, _, _, name, doc in heapq.merge(*streams, key=lambda item: (item[0], item[1], item[2])):
        yield t, name, doc


def paged(docs: Iterable[tuple[float, str, dict[str, Any]]], speed: float
          ) -> Iterator[tuple[float, str, dict[str, Any]]]:
    """Group consecutive events of one descriptor due within ``PAGE_WINDOW_S`` into event pages."""
    from event_model import pack_event_page

    window = PAGE_WINDOW_S * speed if speed > 0 else float("inf")
    batch: list[dict[str, Any]] = []
    batch_t = 0.0

    def flush() -> Iterator[tuple[float, str, dict[str, Any]]]:
        if batch:
            yield batch_t, "event_page", pack_event_page(*batch)
            batch.clear()

    for t, name, doc in docs:
        if name == "event":
            if batch and (doc["descriptor"] != batch[0]["descriptor"] or t - batch_t > window):
                yield from flush()
            if not batch:
                batch_t = t
            batch.append(doc)
            continue
        yield from flush()
        yield t, name, doc
    yield from flush()


def zmq_sink(address: str) -> tuple[Sink, Callable[[], None]]:
    """A bluesky 0MQ publisher to ``HOST:PORT`` (a proxy's in-port) and its close function."""
    from bluesky.callbacks.zmq import Publisher

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--publish {address!r}: expected HOST:PORT")
    publisher = Publisher(f"{host}:{port}")
    time.sleep(0.2)  # a PUB socket drops what it sends before the connection is up
    return publisher, publisher.close


class _CatalogSink:
    """Writes replayed documents into another data directory; frame files are linked in beside them."""

    def __init__(self, data_dir: Path) -> None:
        from controller.catalog import make_writer

        self.paths = prepare_data_dir(data_dir)
        self.writer = make_writer(open_catalog(self.paths.root))

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if name == "stream_resource" and str(doc.get("uri", "")).startswith("file:"):
            doc = dict(doc, uri=self._link(doc["uri"]))
        self.writer(name, doc)

    def _link(self, uri: str) -> str:
        source = Path(urlparse(uri).path)
        target = self.paths.frames / source.name
        if not target.exists() and source.exists():
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
        return target.resolve().as_uri() if target.exists() else uri


def replay_documents(data_dir: str | Path, experiment_id: str, *, speed: float = 0.0,
                     publish: str | None = None, to: str | Path | None = None,
                     sinks: Iterable[Sink] = (), sleep: Callable[[float], None] = time.sleep,
                     clock: Callable[[], float] = time.perf_counter) -> ReplayResult:
    """Re-emit a stored experiment's documents in time order.

    Parameters
    ----------
    data_dir
        The data directory holding the experiment.
    experiment_id
        Its id (or a unique prefix).
    speed
        Replay pace relative to the recording (2: twice as fast); 0: no waiting at all.
    publish
        ``HOST:PORT`` of a 0MQ proxy's in-port to publish to.
    to
        A data directory to store the replayed experiment in (created; must not be ``data_dir``).
    sinks
        More ``(name, doc)`` callables (tests, in-process consumers).
    sleep, clock
        Waits between documents, and the wall clock it paces by (injectable).
    """
    if speed < 0:
        raise ValueError(f"--speed must be >= 0, got {speed}")
    src = prepare_data_dir(data_dir, create=False)
    store = find_experiment(src.root, experiment_id)
    eid = store.folder.name
    targets: list[Sink] = list(sinks)
    closers: list[Callable[[], None]] = []
    out_dir = None
    if to is not None:
        out = Path(to).expanduser().resolve()
        if out == src.root:
            raise ValueError("--to must be another data directory than --data")
        catalog_sink = _CatalogSink(out)
        out_dir = catalog_sink.paths.root
        replay_store = CheckpointStore(experiments_dir(out_dir) / eid)
        header = {k: v for k, v in store.read().items() if k not in ("controller", "sim", "finished", "updated")}
        replay_store.create(store.protocol_path.read_text(encoding="utf-8"),
                            {**header, "replay_of": str(store.folder)})
        targets.append(catalog_sink)
    if publish is not None:
        sink, close = zmq_sink(publish)
        targets.append(sink)
        closers.append(close)
    if not targets:
        raise ValueError("nothing to replay to: pass --publish HOST:PORT and/or --to DIR")
    client = open_catalog(src.root, create=False)
    runs = experiment_runs(client, eid)
    counts: dict[str, int] = {}
    wall0 = clock()
    first: float | None = None
    last = 0.0
    try:
        for t, name, doc in paged(merged_documents(runs), speed):
            if first is None:
                first = t
            if speed > 0:
                due = (t - first) / speed - (clock() - wall0)
                if due > 0:
                    sleep(due)
            for target in targets:
                target(name, doc)
            counts[name] = counts.get(name, 0) + 1
            last = t
    finally:
        for close in closers:
            close()
        if out_dir is not None:
            CheckpointStore(experiments_dir(out_dir) / eid).update(finished=True)
    return ReplayResult(experiment_id=eid, runs=len(runs), documents=counts, wall_s=clock() - wall0,
                        span_s=last - (first or last), data_dir=out_dir)


def replay_sim(data_dir: str | Path, experiment_id: str, *, to: str | Path | None = None,
               progress: bool = True, handle_sigint: bool = True,
               configure_engine: Callable[[Any], None] | None = None) -> Any:
    """Run a stored experiment's protocol again on the simulated beamline, as it was set up.

    The protocol text (``experiments/<id>/protocol.yaml``) and the checkpoint header's beamline
    settings (instrument preset, seed, sample detail) and options (scan overrides, poll period)
    are reused; the result is a new experiment in ``to`` (default: the same data directory).

    Returns
    -------
    controller.experiment.ExperimentResult
    """
    from controller.experiment import run_protocol

    src = prepare_data_dir(data_dir, create=False)
    store = find_experiment(src.root, experiment_id)
    header = store.read()
    bl = header.get("beamline", {})
    opts = header.get("options", {})
    # The stored protocol text, under its own name (run_protocol keeps the file's path in the header).
    return run_protocol(store.protocol_path, data_dir=Path(to) if to is not None else src.root,
                        seed=int(bl.get("seed", 0)), coarsen=float(bl.get("coarsen", 2.0)),
                        scan_overrides=opts.get("scan_overrides") or None, poll_period=opts.get("poll_period"),
                        progress=progress, handle_sigint=handle_sigint, configure_engine=configure_engine)


def describe(result: ReplayResult) -> str:
    """One line per fact of a document replay, for the terminal."""
    docs = ", ".join(f"{n} {k}" for k, n in sorted(result.documents.items()))
    lines = [f"experiment:   {result.experiment_id}  ({result.runs} runs)",
             f"documents:    {docs}",
             f"replayed:     {result.span_s:.1f} s of recording in {result.wall_s:.1f} s"]
    if result.data_dir is not None:
        lines.append(f"stored in:    {result.data_dir}  (tomocycle monitor --data {result.data_dir})")
    return "\n".join(lines)


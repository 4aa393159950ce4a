"""The live consumer: a separate process that follows experiments and writes their analysis.

It subscribes to the 0MQ proxy (:class:`bluesky.callbacks.zmq.RemoteDispatcher`, on a thread of
its own that only queues documents, so the socket is drained quickly) and works through the queue
on the main thread:

* While a scan is acquired it reads the new frames from the HDF5 file the StreamResource names,
  up to the index the latest StreamDatum reports (SWMR reads, the file is still being written),
  and updates a live preview (:class:`controller.scan_preview.ScanPreview`: binned volume and
  three orthogonal slices), read at most every ``preview_s`` seconds and written as often as its
  own cost allows.
* When a scan ends, and whenever it has reason to believe it missed something, it *reconciles*:
  it asks the catalog which scans of the experiment have finished and runs, in timestep order,
  the end-of-scan work for each one not done yet (:func:`controller.experiment_analysis.finish_timestep`:
  full reconstruction from the frame file, slices, particle analysis of all timesteps so far,
  files and an analysis run). The documents are only a trigger; the results come from the
  catalog and the frame files, so a consumer that missed documents, was restarted, or started
  late writes exactly what an uninterrupted one writes.

Gaps it detects: a document of a run whose start it never saw (started late, or the start was
dropped: 0MQ drops silently when a subscriber falls behind its high-water mark), a jump in an
event's or a StreamDatum's ``seq_num``, a StreamDatum whose StreamResource it never saw, and a
start arriving after other documents of its run. Each one is counted and triggers a
reconciliation. A reconciliation also runs at start-up (a late consumer catches up on finished
and running experiments) and every ``catchup_s`` seconds (a dropped stop document).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.formats import TomoFileError
from analysis.reconstruction import ReconOptions
from controller.experiment_analysis import (ANALYSIS_MAX_SIDE, AnalysisError, analysis_root, done_timesteps,
                                            experiment_info, finish_timestep, list_experiments, write_summary)
from controller.scan_preview import ScanPreview

log = logging.getLogger(__name__)

#: Where the consumer's own time goes when it has nothing to do: look for missed stops this often.
DEFAULT_CATCHUP_S = 5.0
DEFAULT_PREVIEW_S = 1.0


@dataclass
class ConsumerStats:
    """What a consumer saw and did (printed at exit, checked by tests)."""

    documents: int = 0
    missed_starts: int = 0
    seq_gaps: int = 0
    missed_resources: int = 0
    late_starts: int = 0
    reconciliations: int = 0
    timesteps_done: int = 0
    previews: int = 0
    frames_read: int = 0


@dataclass
class _LiveScan:
    """A scan being acquired, as far as the documents tell."""

    uid: str
    experiment_id: str
    timestep: str
    frames_file: Path | None = None
    available: int = 0  #: frames the file holds according to the latest StreamDatum
    preview: ScanPreview | None = None
    last_read: float = -float("inf")
    image_resource: str | None = None


@dataclass
class _Seq:
    last: dict[str, int] = field(default_factory=dict)  # descriptor uid -> last seq_num seen


class LiveConsumer:
    """Follow experiments' documents and keep ``DATA/analysis/<experiment_id>/`` up to date.

    Parameters
    ----------
    data_dir
        The data directory the experiment writes (catalog and frames).
    experiment_id
        Follow only this experiment (default: every experiment in the catalog and any new one).
    opts
        Reconstruction options of the full per-timestep reconstructions.
    max_side
        Bin those to at most this width (None or 0: full resolution); see
        :data:`controller.experiment_analysis.ANALYSIS_MAX_SIDE`.
    preview_s
        Shortest interval between two writes of a scan's live preview.
    catchup_s
        Interval of the catalog check for scans whose end the consumer did not hear of.
    exit_when_finished
        Return from :meth:`run` once every followed experiment has ended and is fully analysed.
    """

    def __init__(self, data_dir: str | os.PathLike[str], *, experiment_id: str | None = None,
                 opts: ReconOptions = ReconOptions(), max_side: int | None = ANALYSIS_MAX_SIDE,
                 preview_s: float = DEFAULT_PREVIEW_S,
                 catchup_s: float = DEFAULT_CATCHUP_S, exit_when_finished: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.experiment_id = experiment_id
        self.opts = opts
        self.max_side = max_side
        self.preview_s = preview_s
        self.catchup_s = catchup_s
        self.exit_when_finished = exit_when_finished
        self.stats = ConsumerStats()
        self.queue: queue.Queue[tuple[str, dict]] = queue.Queue()
        self._client: Any = None
        self._runs: dict[str, str | None] = {}  # run uid -> experiment id (None: not an experiment's run)
        self._desc_run: dict[str, str] = {}  # descriptor uid -> run uid
        self._res_run: dict[str, str] = {}  # stream resource uid -> run uid
        self._scans: dict[str, _LiveScan] = {}
        self._seq = _Seq()
        self._datum_seq: dict[str, int] = {}  # descriptor uid -> last StreamDatum seq_nums stop
        self._stopped: set[str] = set()
        self._dirty: set[str | None] = {None}  # experiments to reconcile (None: all in the catalog)
        self._finished: dict[str, bool] = {}
        self._complete: dict[str, bool] = {}
        # Per experiment: T0's segmentation and the timesteps measured so far (each scan's end
        # re-analyses the series; only the new volume is segmented).
        self._series: dict[str, dict] = {}

    # ------------------------------------------------------------------ input
    def __call__(self, name: str, doc: dict) -> None:
        """Queue a document (the RemoteDispatcher's thread calls this; nothing heavy here)."""
        self.queue.put((name, doc))

    @property
    def client(self) -> Any:
        """The catalog client, opened on first use (the experiment may create the catalog)."""
        if self._client is None:
            from controller.catalog import open_catalog

            self._client = open_catalog(self.data_dir, create=False)
        return self._client

    # ------------------------------------------------------------------ main loop
    def run(self, stop: threading.Event | None = None, *, wait_for_catalog_s: float = 600.0) -> ConsumerStats:
        """Process documents and reconcile until ``stop`` is set (or, with ``exit_when_finished``, done)."""
        stop = stop or threading.Event()
        deadline = time.monotonic() + wait_for_catalog_s
        # The experiment creates the catalog; opening it first would race its initialisation.
        while not (self.data_dir / "catalog.db").exists():
            if stop.is_set() or time.monotonic() > deadline:
                return self.stats
            time.sleep(0.2)  # documents wait in the queue meanwhile
        next_catchup = 0.0
        while not stop.is_set():
            if time.monotonic() >= next_catchup:
                self._dirty.add(None if self.experiment_id is None else self.experiment_id)
                next_catchup = time.monotonic() + self.catchup_s
            if self._dirty:
                self.reconcile()
                if self.exit_when_finished and self._all_done():
                    break
            try:
                name, doc = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.handle(name, doc)
            # Drain what has queued up meanwhile before the next (slower) reconciliation.
            while True:
                try:
                    name, doc = self.queue.get_nowait()
                except queue.Empty:
                    break
                self.handle(name, doc)
        return self.stats

    def _all_done(self) -> bool:
        return bool(self._finished) and all(self._finished.values()) and all(
            self._complete.get(eid, False) for eid in self._finished)

    # ------------------------------------------------------------------ documents
    def handle(self, name: str, doc: dict) -> None:
        """Track one document; detect gaps; update live previews."""
        self.stats.documents += 1
        handler = getattr(self, f"_on_{name}", None)
        if handler is not None:
            handler(doc)

    def _follows(self, experiment_id: str | None) -> bool:
        return experiment_id is not None and self.experiment_id in (None, experiment_id)

    def _on_start(self, doc: dict) -> None:
        uid = doc["uid"]
        if uid in self._runs and self._runs[uid] is not None:
            self.stats.late_starts += 1  # adopted from the catalog before its start arrived
        eid = doc.get("experiment_id")
        self._runs[uid] = eid
        if not self._follows(eid):
            return
        self._finished.setdefault(eid, False)
        if doc.get("plan_name") == "tomo_scan" and uid not in self._scans:
            self._scans[uid] = _LiveScan(uid, eid, str(doc.get("timestep")))

    def _run_of(self, run_uid: str) -> str | None:
        """The experiment of a run, looking it up in the catalog if its start was never seen."""
        if run_uid in self._runs:
            return self._runs[run_uid]
        self.stats.missed_starts += 1
        try:
            start = self.client[run_uid].metadata["start"]
        except Exception:  # not in the catalog (yet): the next reconciliation covers it
            log.warning("documents of run %s whose start is in neither the stream nor the catalog", run_uid)
            self._dirty.add(self.experiment_id)
            return None
        self._on_start(start)
        self._dirty.add(start.get("experiment_id"))
        return self._runs.get(run_uid)

    def _on_descriptor(self, doc: dict) -> None:
        self._desc_run[doc["uid"]] = doc["run_start"]
        self._run_of(doc["run_start"])

    def _check_seq(self, descriptor: str, first: int, last: int, table: dict[str, int]) -> None:
        expected = table.get(descriptor, 0) + 1
        if first != expected:
            self.stats.seq_gaps += 1
            log.warning("sequence gap on descriptor %s: expected %d, got %d", descriptor, expected, first)
            run = self._desc_run.get(descriptor)
            self._dirty.add(self._runs.get(run) if run else self.experiment_id)
        table[descriptor] = max(table.get(descriptor, 0), last)

    def _on_event(self, doc: dict) -> None:
        self._event_seq(doc["descriptor"], doc["seq_num"], doc["seq_num"])

    def _on_event_page(self, doc: dict) -> None:
        seq = doc["seq_num"]
        if seq:
            self._event_seq(doc["descriptor"], min(seq), max(seq))

    def _event_seq(self, descriptor: str, first: int, last: int) -> None:
        if descriptor not in self._desc_run:
            self.stats.missed_starts += 1  # descriptor missed: its run is unknown here
            self._dirty.add(self.experiment_id)
            return
        self._check_seq(descriptor, first, last, self._seq.last)

    def _on_stream_resource(self, doc: dict) -> None:
        run = doc.get("run_start")
        if run is None:
            return
        self._res_run[doc["uid"]] = run
        if not self._follows(self._run_of(run)):
            return
        scan = self._scans.get(run)
        if scan is not None and doc.get("data_key", "").endswith("_image"):
            scan.image_resource = doc["uid"]
            scan.frames_file = Path(doc["uri"].replace("file://localhost", "", 1).replace("file://", "", 1))

    def _on_stream_datum(self, doc: dict) -> None:
        res = doc["stream_resource"]
        desc = doc.get("descriptor")
        run = self._res_run.get(res) or (self._desc_run.get(desc) if desc else None)
        if run is None:
            self.stats.missed_resources += 1
            self._dirty.add(self.experiment_id)
            return
        if res not in self._res_run:
            self.stats.missed_resources += 1
            self._res_run[res] = run
        scan = self._scans.get(run)
        if scan is None:
            return
        if scan.image_resource in (None, res):
            # Several data keys share seq_nums (image, key, angle): check one of them only.
            # Step scans' datums carry an empty range (their events carry the seq_nums).
            seq = doc.get("seq_nums") or {}
            if seq.get("stop", 0) > seq.get("start", 0):
                self._check_seq(f"{desc}:{res}", seq["start"], seq["stop"] - 1, self._datum_seq)
            scan.available = max(scan.available, int(doc["indices"]["stop"]))
            if scan.frames_file is None:
                self._adopt_file(scan)
            self._update_preview(scan, force=False)

    def _adopt_file(self, scan: _LiveScan) -> None:
        # The StreamResource was missed: the catalog knows the file too.
        from controller.experiment_analysis import frames_file

        try:
            scan.frames_file = frames_file(self.client[scan.uid])
        except Exception:
            scan.frames_file = None

    def _on_stop(self, doc: dict) -> None:
        run = doc["run_start"]
        self._stopped.add(run)
        eid = self._run_of(run)
        if not self._follows(eid):
            return
        scan = self._scans.pop(run, None)
        if scan is not None and doc.get("exit_status") == "success":
            self._update_preview(scan, force=True)
        if self._runs.get(run) is not None:
            self._dirty.add(eid)

    # ------------------------------------------------------------------ preview
    def _update_preview(self, scan: _LiveScan, *, force: bool) -> None:
        if scan.frames_file is None:
            return
        now = time.monotonic()
        if not force and now - scan.last_read < self.preview_s:
            return
        root = analysis_root(self.data_dir, scan.experiment_id)
        if scan.preview is None:
            scan.preview = ScanPreview(scan.frames_file, root / scan.timestep, min_write_s=self.preview_s)
        try:
            self.stats.frames_read += scan.preview.advance(scan.available)
        except (OSError, KeyError) as err:  # not flushed yet: the next datum tries again
            log.debug("preview read of %s failed: %s", scan.frames_file, err)
            return
        scan.last_read = now
        names = scan.preview.write(final=force)
        if names is None:
            return
        self.stats.previews += 1
        volume = root / scan.timestep / "preview_volume.npy"
        live = {"timestep": scan.timestep, "scan_uid": scan.uid, "frames_read": scan.preview.read,
                "projections": scan.preview.view.n_projections,
                "slices": {k: f"{scan.timestep}/{v}" for k, v in names.items() if k != "volume"},
                "volume": f"{scan.timestep}/{volume.name}" if volume.exists() else None}
        try:
            write_summary(root, experiment_info(self.client, scan.experiment_id), live=live)
        except AnalysisError:
            pass

    # ------------------------------------------------------------------ reconciliation
    def reconcile(self) -> None:
        """Finish, in timestep order, every finished scan of the dirty experiments not yet analysed."""
        dirty, self._dirty = self._dirty, set()
        self.stats.reconciliations += 1
        if None in dirty:
            dirty.discard(None)
            dirty.update(list_experiments(self.client) if self.experiment_id is None else [self.experiment_id])
        for eid in sorted(e for e in dirty if e is not None and self._follows(e)):
            try:
                info = experiment_info(self.client, eid)
            except AnalysisError:
                continue
            root = analysis_root(self.data_dir, eid)
            done = done_timesteps(root)
            for k, entry in enumerate(info.scans):
                if entry.timestep in done:
                    continue
                try:
                    finish_timestep(self.client, self.data_dir, info, k, opts=self.opts, max_side=self.max_side,
                                    cache=self._series.setdefault(eid, {}))
                except (OSError, TomoFileError) as err:
                    # The file is still held by the writer (stop comes before unstage): retry soon.
                    log.info("timestep %s of %s not readable yet (%s); retrying", entry.timestep, eid, err)
                    self._dirty.add(eid)
                    break
                self.stats.timesteps_done += 1
                log.info("experiment %s: timestep %s analysed", eid, entry.timestep)
                # Documents keep arriving while a timestep is analysed: keep the previews fresh.
                if not self.queue.empty():
                    self._dirty.add(eid)
                    break
            done = done_timesteps(root)
            self._finished[eid] = info.finished
            self._complete[eid] = all(s.timestep in done for s in info.scans)
            if info.scans and not (root / "summary.json").exists():
                write_summary(root, info)


def serve(data_dir: str | os.PathLike[str], proxy: str, *, experiment_id: str | None = None,
          exit_when_finished: bool = False, opts: ReconOptions = ReconOptions(),
          max_side: int | None = ANALYSIS_MAX_SIDE,
          catchup_s: float = DEFAULT_CATCHUP_S, preview_s: float = DEFAULT_PREVIEW_S) -> ConsumerStats:
    """Subscribe to the proxy at ``proxy`` (host:port) and consume until interrupted (or finished)."""
    from bluesky.callbacks.zmq import RemoteDispatcher

    consumer = LiveConsumer(data_dir, experiment_id=experiment_id, opts=opts, max_side=max_side,
                            exit_when_finished=exit_when_finished,
                            catchup_s=catchup_s, preview_s=preview_s)
    dispatcher = RemoteDispatcher(proxy)
    dispatcher.subscribe(consumer)
    # The dispatcher's loop only receives and queues; a daemon thread, so the process ends with run().
    thread = threading.Thread(target=_dispatch, args=(dispatcher,), daemon=True, name="zmq-dispatcher")
    thread.start()
    return consumer.run()


def _dispatch(dispatcher: Any) -> None:
    try:
        dispatcher.start()
    except Exception:  # the process is ending (socket closed under it)
        log.debug("dispatcher stopped", exc_info=True)

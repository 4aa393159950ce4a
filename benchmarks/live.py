"""``tomocycle bench live``: does the live view keep pace with the acquisition, at its real rate?

A writer process writes a scan into an NXtomo file the way the detector does (darks and flats
first, then one projection per acquisition interval, each appended and flushed for SWMR readers)
at the real pace of the 002 scan (2505 projections of 2048 x 2048 in 10 minutes, one every
240 ms) or the 003 scan (1501 projections in 3 minutes, one every 120 ms; frame size not given
in the paper, 2048 x 2048 assumed). This process follows the file with the live consumer's own
code (:class:`controller.scan_preview.ScanPreview`): every ``--preview-s`` seconds it reads the
frames that have arrived, flat/dark-corrects them, adds them to a 4x-binned volume and to
three full-resolution orthogonal slices by streaming FBP, and writes the preview files as
often as their cost allows. It reports the work per projection by stage, the share of the
acquisition it kept the machine busy, the largest backlog, and how long after the last
projection the final view (slices and volume) was on disk: the target is 10 s.

Frames are precomputed before the clock starts (a cylinder with coaxial tubes and spheres on
the axis, rotation-invariant so eight noisy frames can be cycled; the cost does not depend on
the content), so the writer costs only its HDF5 writes; its CPU time is reported too. Paganin
phase retrieval (a 2-D FFT per frame) is left to the stored scan.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Acquisition:
    """A scan's pace, size and angular range."""

    name: str
    projections: int
    seconds: float
    frame: int
    span_deg: float
    darks: int
    flats: int
    note: str

    @property
    def interval_s(self) -> float:
        """Time between projections."""
        return self.seconds / self.projections


#: 002: ID16B holo-tomography; 003: TOMCAT micro-CT (frame size not stated in the paper: 2048 assumed).
ACQUISITIONS = {
    "002": Acquisition("002", 2505, 600.0, 2048, 360.0, 21, 20, "2505 projections of 2048 x 2048 over 360 deg in 10 min"),
    "003": Acquisition("003", 1501, 180.0, 2048, 180.0, 20, 20,
                       "1501 projections over 180 deg in 3 min (2048 x 2048 assumed)"),
}
#: Distinct noisy frames the writer cycles through.
N_TEMPLATES = 8
#: Target: the final view on disk this long after the last projection at most.
TARGET_LATENCY_S = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``tomocycle bench live``."""
    parser.add_argument("--scan", choices=sorted(ACQUISITIONS), default="002", help="acquisition to keep up with")
    parser.add_argument("--seconds", type=float, default=None,
                        help="acquire only this long at the real pace (default: the whole scan)")
    parser.add_argument("--frame", type=int, default=None, help="frame width and height (default: the scan's)")
    parser.add_argument("--bin", type=int, default=4, help="binning of the live volume")
    parser.add_argument("--threads", type=int, default=2, help="numba threads of the consumer")
    parser.add_argument("--preview-s", type=float, default=1.0, help="the consumer reads new frames this often")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the frame file goes (default: a temporary folder; 002 needs 21 GB)")
    parser.add_argument("--exact", action="store_true",
                        help="never pair projections in the binned volume, even when behind (the consumer does)")
    parser.add_argument("--quick", action="store_true", help="128 x 128 frames for 3 s (a run of the code path, for tests)")


def phantom_counts(frame: int, rng: np.random.Generator, flux: float = 2.0e4, dark: float = 100.0) -> np.ndarray:
    """Raw uint16 counts of a rotation-invariant sample: cylinder, coaxial tube, spheres on the axis."""
    u = np.arange(frame, dtype=np.float64) - frame / 2 + 0.5
    v = u[:, None]
    r = frame / 2

    def chord(radius: float, du: np.ndarray) -> np.ndarray:
        return 2.0 * np.sqrt(np.maximum(radius * radius - du * du, 0.0))

    lint = 0.4 * chord(0.42 * r, u)[None, :] - 0.2 * chord(0.30 * r, u)[None, :] + 0.2 * chord(0.26 * r, u)[None, :]
    for z0, radius in ((-0.5, 0.12), (0.0, 0.2), (0.55, 0.08)):
        lint = lint + 0.6 * chord(radius * r, np.sqrt(u[None, :] ** 2 + (v - z0 * r) ** 2))
    lint = lint / r * 2.0  # at most a few attenuation lengths, whatever the frame size
    counts = rng.poisson(flux * np.exp(-lint)) + dark
    return np.clip(counts, 0, 65535).astype(np.uint16)


def _write_scan(path: str, acq: Acquisition, frame: int, n: int, ready, report) -> None:
    """Writer process: darks, flats, then ``n`` projections at the acquisition's pace."""
    from devices.nxtomo_file import IMAGE_KEYS, NXtomoWriter

    rng = np.random.default_rng(7)
    frames = [phantom_counts(frame, rng) for _ in range(N_TEMPLATES)]
    flat = np.clip(rng.poisson(2.0e4, (frame, frame)) + 100, 0, 65535).astype(np.uint16)
    dark = np.clip(rng.poisson(100.0, (frame, frame)), 0, 65535).astype(np.uint16)
    writer = NXtomoWriter(Path(path), (frame, frame))
    try:
        for _ in range(acq.darks):
            writer.append(dark, image_key=IMAGE_KEYS["dark"], angle_deg=0.0, count_time=acq.interval_s)
        for _ in range(acq.flats):
            writer.append(flat, image_key=IMAGE_KEYS["flat"], angle_deg=0.0, count_time=acq.interval_s)
        cpu0 = time.process_time()
        t0 = time.monotonic()
        ready.set()
        late = 0.0
        for i in range(n):
            due = t0 + (i + 1) * acq.interval_s
            time.sleep(max(0.0, due - time.monotonic()))
            writer.append(frames[i % N_TEMPLATES], image_key=IMAGE_KEYS["projection"],
                          angle_deg=acq.span_deg * i / acq.projections, count_time=acq.interval_s)
            late = max(late, time.monotonic() - due)
        report.put({"last_written": time.time(), "late_s": late, "cpu_s": time.process_time() - cpu0,
                    "seconds": time.monotonic() - t0})
    finally:
        writer.close()


@dataclass
class Follow:
    """What the consumer side measured."""

    updates: int = 0
    busy_s: float = 0.0
    max_backlog: int = 0
    writes: int = 0


def _follow(preview, path: Path, total: int, first: int, preview_s: float, writer: mp.Process) -> Follow:
    """Read what has arrived every ``preview_s`` until all ``total`` frames are in the view.

    ``first``: frames before the projections (darks and flats, all there at the start).
    """
    from controller.scan_preview import frames_in

    out = Follow()
    while preview.read < total:
        start = time.monotonic()
        available = frames_in(path)
        if available > preview.read:
            out.max_backlog = max(out.max_backlog, available - max(preview.read, first))
            t = time.perf_counter()
            preview.advance(available)
            out.writes += preview.write() is not None
            out.busy_s += time.perf_counter() - t
            out.updates += 1
        elif not writer.is_alive():
            raise RuntimeError(f"the writer stopped after {available} of {total} frames")
        time.sleep(max(0.0, preview_s - (time.monotonic() - start)))
    return out


def run(args: argparse.Namespace) -> int:
    """Follow a scan written at the real pace and print whether the live view keeps up."""
    import numba

    numba.set_num_threads(min(max(1, args.threads), numba.config.NUMBA_NUM_THREADS))
    acq = ACQUISITIONS[args.scan]
    frame = 128 if args.quick else int(args.frame or acq.frame)
    seconds = 3.0 if args.quick else min(acq.seconds, float(args.seconds or acq.seconds))
    n = max(1, int(round(seconds / acq.interval_s)))
    if frame < 16 or frame % args.bin or seconds <= 0:
        raise ValueError(f"--frame must be >= 16 and a multiple of --bin, --seconds > 0; got {frame}, {args.bin}, "
                         f"{seconds}")
    work = Path(tempfile.mkdtemp(prefix="tomocycle-bench-live-", dir=args.dir))
    need = (n + acq.darks + acq.flats) * frame * frame * 2
    free = shutil.disk_usage(work).free
    if need > free - (1 << 30):
        shutil.rmtree(work, ignore_errors=True)
        raise ValueError(f"--dir {work.parent}: the frame file needs {need / 2**30:.1f} GB, {free / 2**30:.1f} GB free "
                         f"(use --seconds or --dir)")
    path = work / "scan.h5"
    print(f"scan {acq.name}: {acq.note}; one projection every {1e3 * acq.interval_s:.0f} ms")
    print(f"live view: {frame // args.bin}^3 volume ({args.bin}x binned) + 3 orthogonal {frame} x {frame} slices; "
          f"{numba.get_num_threads()} threads; new frames read every {args.preview_s:g} s")
    try:
        t0 = time.perf_counter()
        _warm_up(frame, args.bin)  # numba kernels load from the cache (or compile) here
        print(f"kernels loaded in {time.perf_counter() - t0:.2f} s; acquiring {n} projections "
              f"({n * acq.interval_s:.0f} s) ...", flush=True)
        report = _measure(path, work, acq, frame, n, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _print(report, acq, n, args.quick, args.exact)
    return 0


def _warm_up(frame: int, bin_factor: int) -> None:
    from analysis.live_preview import LivePreview

    raw = np.stack([phantom_counts(frame, np.random.default_rng(0))] * 4)
    LivePreview((frame, frame), bin=bin_factor).add(raw, np.array([2, 1, 0, 0]), np.array([0.0, 0.0, 0.0, 90.0]))


def _measure(path: Path, work: Path, acq: Acquisition, frame: int, n: int, args: argparse.Namespace) -> dict:
    from controller.scan_preview import ScanPreview

    ctx = mp.get_context("spawn")  # no fork of a process holding numba's threads
    ready, queue = ctx.Event(), ctx.Queue()
    writer = ctx.Process(target=_write_scan, args=(str(path), acq, frame, n, ready, queue), daemon=True)
    writer.start()
    if not ready.wait(120):
        writer.terminate()
        raise RuntimeError("the writer process did not start within 120 s")
    preview = ScanPreview(path, work / "preview", bin=args.bin, min_write_s=args.preview_s, catch_up=not args.exact)
    cpu0 = time.process_time()
    follow = _follow(preview, path, acq.darks + acq.flats + n, acq.darks + acq.flats, args.preview_s, writer)
    t = time.perf_counter()
    preview.write(final=True)
    follow.busy_s += time.perf_counter() - t
    done = time.time()
    cpu = time.process_time() - cpu0
    written = queue.get(timeout=60)
    writer.join(10)
    return {"follow": follow, "written": written, "latency_s": done - written["last_written"], "cpu_s": cpu,
            "stages": dict(preview.view.seconds), "io": dict(preview.seconds), "paired": preview.view.paired,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _print(r: dict, acq: Acquisition, n: int, quick: bool, exact: bool) -> None:
    f, w = r["follow"], r["written"]
    per = 1e3 * f.busy_s / n
    stages = ", ".join(f"{k} {1e3 * v / n:.1f}" for k, v in r["stages"].items())
    print(f"acquired {n} projections in {w['seconds']:.1f} s (writer at most {1e3 * w['late_s']:.0f} ms late, "
          f"{w['cpu_s']:.1f} s of CPU)")
    print(f"consumer: {per:.1f} ms of work per projection (read {1e3 * r['io']['read'] / n:.1f}, {stages}, "
          f"write {1e3 * r['io']['write'] / n:.1f} ms); {f.updates} updates, {f.writes} preview writes; "
          f"CPU {r['cpu_s']:.0f} s; peak memory {r['peak_rss_mb']:.0f} MB")
    share = f.busy_s / max(w["seconds"], 1e-9)
    print(f"busy {100 * share:.0f} % of the acquisition; ratio acquisition interval / work per projection "
          f"{1e3 * acq.interval_s / max(per, 1e-9):.2f}; largest backlog {f.max_backlog} frames "
          f"({f.max_backlog * acq.interval_s:.1f} s)")
    print(f"binned volume: {r['paired']} of {n} projections added in pairs while behind"
          + (" (--exact: never)" if r["paired"] == 0 and exact else ""))
    verdict = "keeps up" if r["latency_s"] <= TARGET_LATENCY_S else "falls behind"
    print(f"final view on disk {r['latency_s']:.1f} s after the last projection (target: {TARGET_LATENCY_S:.0f} s): "
          f"{verdict}")
    if quick:
        print("--quick: a run of the code path on small frames; the numbers above are not a measurement")

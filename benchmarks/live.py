"""``tomocycle bench live``: can streaming reconstruction keep pace with the acquisition?

For the 002 scan (2505 projections of 2048 x 2048 in about 10 minutes, one every 240 ms) the
live view is a 4x-binned volume plus three full-resolution orthogonal slices, updated as the
projections arrive. This measures the whole per-projection work of the live consumer on raw
16-bit frames: flat/dark normalisation and -log at full resolution, filtering and adding every
detector row to the two vertical full-resolution slices and the middle row to the axial one,
4x binning, filtering and adding to the binned volume. Frames are synthetic (a cylinder's line
integrals with Poisson-like texture, not a full simulation: the cost does not depend on the
content) and are fed in batches of ``--batch`` as fast as the machine takes them.

It times ``--measure`` projections after one warm-up batch and extrapolates to the whole scan:
the cost per projection against the acquisition interval (ratio > 1 keeps up), the extrapolated
reconstruction time against the scan time, and the latency of the last batch (the time from the
last projection to the finished result). It does not pace frames at the real rate and does not
include Paganin phase retrieval (a 2-D FFT per frame, run on the stored scan afterwards).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Acquisition:
    """A scan's pace and frame size."""

    name: str
    projections: int
    seconds: float
    frame: int
    note: str

    @property
    def interval_s(self) -> float:
        """Time between projections."""
        return self.seconds / self.projections


#: 002: ID16B holo-tomography; 003: TOMCAT micro-CT (frame size not stated in the paper: 2048 assumed).
ACQUISITIONS = {
    "002": Acquisition("002", 2505, 600.0, 2048, "2505 projections of 2048 x 2048 in 10 min"),
    "003": Acquisition("003", 1501, 180.0, 2048, "1501 projections in 3 min (2048 x 2048 assumed)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``tomocycle bench live``."""
    parser.add_argument("--scan", choices=sorted(ACQUISITIONS), default="002", help="acquisition to keep up with")
    parser.add_argument("--measure", type=int, default=24, help="projections timed (after one warm-up batch)")
    parser.add_argument("--batch", type=int, default=4, help="projections per streaming update")
    parser.add_argument("--bin", type=int, default=4, help="binning of the live volume")
    parser.add_argument("--frame", type=int, default=None, help="frame width and height (default: the scan's)")
    parser.add_argument("--threads", type=int, default=2, help="numba threads")
    parser.add_argument("--quick", action="store_true", help="256 x 256 frames, 8 projections (for tests)")


def synthetic_frames(n: int, frame: int, start: int, n_angles: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw uint16 counts (n, frame, frame) of a cylinder and their angles (radians)."""
    rng = np.random.default_rng(seed + start)
    t = np.arange(frame, dtype=np.float32) - frame // 2
    r = 0.4 * frame
    lint = 2.0 * np.sqrt(np.maximum(r * r - t * t, 0.0)) / r  # up to 2: transmission down to e^-2
    counts = (2.0e4 * np.exp(-lint))[None, None, :] * (1.0 + 0.01 * rng.standard_normal((n, frame, 1)))
    angles = np.pi * np.arange(start, start + n) / n_angles
    return np.broadcast_to(counts, (n, frame, frame)).astype(np.uint16) + 100, angles


class LiveView:
    """The live consumer's state: full-resolution orthogonal slices and a binned volume."""

    def __init__(self, frame: int, bin_factor: int) -> None:
        from analysis.stream import StreamingFBP

        self.bin = bin_factor
        self.full = StreamingFBP((frame, frame), axial_rows=[frame // 2], vertical=(frame // 2, frame // 2))
        small = frame // bin_factor
        self.binned = StreamingFBP((small, small))
        self.flats = np.full((1, frame, frame), 2.0e4 + 100, np.float32)
        self.darks = np.full((1, frame, frame), 100, np.float32)
        self.seconds = {"normalise": 0.0, "full-res slices": 0.0, "binned volume": 0.0}

    def add(self, raw: np.ndarray, angles: np.ndarray) -> None:
        """Correct, -log and add a batch of raw frames to both views."""
        from analysis.prep import bin_frames, minus_log, normalise

        t0 = time.perf_counter()
        lint = minus_log(normalise(raw, self.flats, self.darks))
        t1 = time.perf_counter()
        self.full.add_many(lint, angles)
        t2 = time.perf_counter()
        self.binned.add_many(bin_frames(lint, self.bin), angles)
        t3 = time.perf_counter()
        for key, dt in zip(self.seconds, (t1 - t0, t2 - t1, t3 - t2)):
            self.seconds[key] += dt


def run(args: argparse.Namespace) -> int:
    """Measure the per-projection cost and print it against the acquisition's pace."""
    import numba

    numba.set_num_threads(min(max(1, args.threads), numba.config.NUMBA_NUM_THREADS))
    acq = ACQUISITIONS[args.scan]
    frame = 256 if args.quick else (args.frame or acq.frame)
    measure = 8 if args.quick else int(args.measure)
    batch = max(1, int(args.batch))
    if frame % args.bin or measure < batch:
        raise ValueError(f"--frame must be a multiple of --bin and --measure >= --batch, got {frame}, {args.bin}, "
                         f"{measure}, {batch}")
    t0 = time.perf_counter()
    view = LiveView(frame, args.bin)
    view.add(*synthetic_frames(batch, frame, 0, acq.projections))  # warm-up: numba kernels load
    warm = time.perf_counter() - t0
    view.seconds = dict.fromkeys(view.seconds, 0.0)
    latencies = []
    for start in range(batch, batch + measure, batch):
        raw, angles = synthetic_frames(batch, frame, start, acq.projections)
        t = time.perf_counter()
        view.add(raw, angles)
        latencies.append(time.perf_counter() - t)
    n = batch * len(latencies)
    per_proj = sum(latencies) / n
    scale = (acq.frame / frame) ** 3  # the work grows as rows x pixels per slice
    print(f"scan {acq.name}: {acq.note}; one projection every {1e3 * acq.interval_s:.0f} ms")
    print(f"live view: {frame // args.bin}^3 volume ({args.bin}x binned) + 3 orthogonal {frame} x {frame} slices; "
          f"{numba.get_num_threads()} threads; batches of {batch}; warm-up {warm:.2f} s")
    print(f"measured on {n} projections of {frame} x {frame}: {1e3 * per_proj:.1f} ms per projection ("
          + ", ".join(f"{k} {1e3 * v / n:.1f}" for k, v in view.seconds.items()) + " ms)")
    if args.quick:
        print("--quick: a run of the code path on small frames; the numbers below are not a measurement")
    if frame != acq.frame:
        print(f"extrapolated to {acq.frame} x {acq.frame} frames by (frame ratio)^3 = {scale:.0f}: "
              f"{1e3 * per_proj * scale:.1f} ms per projection")
    cost = per_proj * scale
    total = cost * acq.projections
    # Behind the acquisition, the backlog at its end is what remains after the last frame.
    finish = max(0.0, total - acq.seconds) + max(latencies) * scale
    print(f"ratio acquisition interval / cost: {acq.interval_s / cost:.2f} "
          f"({'keeps up' if cost <= acq.interval_s else 'falls behind'})")
    print(f"whole scan, extrapolated from {n} projections: {total:.0f} s of work for a {acq.seconds:.0f} s scan; "
          f"result ready {finish:.1f} s after the last projection (target: 10 s)")
    return 0

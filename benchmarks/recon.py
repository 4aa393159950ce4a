"""``tomocycle bench recon``: per-slice FBP against astra-toolbox, algotom and scikit-image.

Every method reconstructs the same Poisson-noised sinograms of the analytic Shepp-Logan phantom
(:mod:`benchmarks.shepp`) with the ram-lak filter, on the same number of threads:

* ours: :func:`analysis.fbp.fbp_volume` on ``threads`` slices at once (numba threads);
* algotom: ``fbp_reconstruction(..., gpu=False, ncore=threads)`` on the same slices (numba);
* astra-toolbox: CPU ``FBP`` (single-threaded), one slice per Python thread;
* scikit-image: ``iradon``, one slice per Python thread.

The time per slice is the wall time of one batch of ``threads`` slices divided by ``threads``:
throughput at equal thread count, whatever each library does inside. Each method is warmed up
(numba compilation, library set-up) on a small sinogram, then timed ``repeats`` times (fewer for
a method whose runs exceed ``--budget-s``), interleaved with the other methods' runs so that
load from other processes falls on all alike, and the median reported. RMSE is against the phantom
sampled on each method's own pixel grid (astra and algotom centre their images at
``(n - 1) / 2``, we and scikit-image at ``n // 2``), inside the reconstruction circle.
Peers that are not installed (``pip install 'tomocycle[bench]'``) are reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

#: (detector width N, angles) of the issue's two cases; ``--quick`` uses the small one.
SIZES: tuple[tuple[int, int], ...] = ((512, 900), (1024, 1500))
QUICK_SIZES: tuple[tuple[int, int], ...] = ((128, 180),)
#: Photons per detector pixel in the open beam, and the largest line integral of the phantom.
PHOTONS = 1.0e4
MAX_LINE_INTEGRAL = 2.0


@dataclass
class Result:
    """One method on one size."""

    method: str
    n: int
    n_angles: int
    ms_per_slice: float | None = None
    rmse: float | None = None
    runs: int = 0
    skipped: str | None = None
    times_ms: list[float] = field(default_factory=list)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``tomocycle bench recon``."""
    parser.add_argument("--quick", action="store_true", help="one small case (N=128, 180 angles), for tests")
    parser.add_argument("--sizes", default=None, metavar="NxA,...",
                        help="cases as N x angles, e.g. 512x900,1024x1500 (the default)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every method (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per method, median reported")
    parser.add_argument("--budget-s", type=float, default=60.0,
                        help="stop repeating a method once its timed runs took this long (at least one run)")
    parser.add_argument("--peers", default="astra,algotom,skimage",
                        help="comma-separated peers to compare (astra, algotom, skimage)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")


def _sizes(args: argparse.Namespace) -> tuple[tuple[int, int], ...]:
    if args.quick:
        return QUICK_SIZES
    if not args.sizes:
        return SIZES
    try:
        return tuple(tuple(int(v) for v in item.lower().split("x")) for item in args.sizes.split(","))  # type: ignore[misc]
    except ValueError:
        raise ValueError(f"--sizes must look like 512x900,1024x1500, got {args.sizes!r}") from None


def make_case(n: int, n_angles: int, slices: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """Noisy sinograms (n_angles, slices, n) in phantom units, their angles, and the unit scale.

    The phantom is scaled so its largest line integral is :data:`MAX_LINE_INTEGRAL`, Poisson
    noise of :data:`PHOTONS` open-beam counts is drawn, and the result scaled back, so every
    reconstruction is compared with the unit-contrast phantom.
    """
    from benchmarks.shepp import noisy_sinogram, phantom_sinogram

    angles = np.linspace(0.0, np.pi, n_angles, endpoint=False)
    clean = phantom_sinogram(n, angles, supersample=2)
    scale = MAX_LINE_INTEGRAL / float(clean.max())
    sinos = [noisy_sinogram(clean * scale, PHOTONS, seed=seed + k) / scale for k in range(slices)]
    return np.stack(sinos, axis=1).astype(np.float32), angles, scale


def _ours(threads: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    from analysis.fbp import fbp_volume

    return lambda sinos, angles: fbp_volume(sinos, angles, filter_name="ram-lak", pad_mode="zero")


def _algotom(threads: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    import warnings

    from algotom.rec.reconstruction import fbp_reconstruction

    def run(sinos: np.ndarray, angles: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():  # "no Nvidia GPU found": we ask for the CPU anyway
            warnings.simplefilter("ignore")
            rec = fbp_reconstruction(sinos, sinos.shape[2] // 2, angles, ratio=None, filter_name=None,
                                     apply_log=False, gpu=False, ncore=threads)
        return np.moveaxis(rec, 1, 0)  # (n, slices, n) -> (slices, n, n)
    return run


def _astra_slice(sino: np.ndarray, angles: np.ndarray) -> np.ndarray:
    import astra

    n = sino.shape[1]
    # astra puts the axis at detector position (n_det - 1) / 2; one extra column puts it on
    # pixel n // 2 where our sinograms have it.
    padded = np.pad(sino, ((0, 0), (0, 1)))
    vol_geom = astra.create_vol_geom(n, n)
    proj_geom = astra.create_proj_geom("parallel", 1.0, n + 1, angles)
    proj_id = astra.create_projector("linear", proj_geom, vol_geom)
    sino_id = astra.data2d.create("-sino", proj_geom, padded)
    rec_id = astra.data2d.create("-vol", vol_geom)
    cfg = astra.astra_dict("FBP")
    cfg.update(ReconstructionDataId=rec_id, ProjectionDataId=sino_id, ProjectorId=proj_id,
               option={"FilterType": "ram-lak"})
    alg_id = astra.algorithm.create(cfg)
    try:
        astra.algorithm.run(alg_id)
        return astra.data2d.get(rec_id)
    finally:
        astra.algorithm.delete(alg_id)
        astra.data2d.delete([sino_id, rec_id])
        astra.projector.delete(proj_id)


def _skimage_slice(sino: np.ndarray, angles: np.ndarray) -> np.ndarray:
    from skimage.transform import iradon

    return iradon(sino.T, theta=np.degrees(angles), filter_name="ramp", circle=True)


def _per_thread(slice_fn: Callable, threads: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    pool = ThreadPoolExecutor(max_workers=threads)

    def run(sinos: np.ndarray, angles: np.ndarray) -> np.ndarray:
        futures = [pool.submit(slice_fn, np.ascontiguousarray(sinos[:, k]), angles)
                   for k in range(sinos.shape[1])]
        return np.stack([f.result() for f in futures])
    return run


#: Method -> (factory, pixel-grid origin: "floor" n // 2 or "half" (n - 1) / 2).
METHODS: dict[str, tuple[Callable[[int], Callable], str]] = {
    "ours": (_ours, "floor"),
    "algotom": (_algotom, "half"),
    "astra": (lambda t: _per_thread(_astra_slice, t), "half"),
    "skimage": (lambda t: _per_thread(_skimage_slice, t), "floor"),
}
_MODULES = {"algotom": "algotom", "astra": "astra", "skimage": "skimage"}


def _available(method: str) -> str | None:
    """None if the method can run, else why not."""
    import importlib.util

    module = _MODULES.get(method)
    if module and importlib.util.find_spec(module) is None:
        return f"{module} not installed (pip install 'tomocycle[bench]')"
    return None


def _truth(n: int, origin: str) -> np.ndarray:
    from benchmarks.shepp import phantom_image

    shift = 0.0 if origin == "floor" else n // 2 - (n - 1) / 2.0
    return phantom_image(n, supersample=4, shift=shift)


def _rmse(rec: np.ndarray, truth: np.ndarray) -> float:
    n = truth.shape[0]
    yy, xx = np.indices((n, n))
    inside = np.hypot(yy - n // 2, xx - n // 2) < 0.45 * n  # the phantom's disc, all methods see it
    return float(np.sqrt(np.mean([np.mean((r[inside] - truth[inside]) ** 2) for r in rec])))


def _prepare(method: str, n: int, args: argparse.Namespace, case: tuple[np.ndarray, np.ndarray]
             ) -> tuple[Result, Callable | None]:
    """Check, build and warm up one method (numba compilation, library set-up) on a small case."""
    res = Result(method, n, len(case[1]))
    why = _available(method)
    if why:
        res.skipped = why
        return res, None
    sinos, angles = case
    small, step = min(n, 64), max(1, len(angles) // 32)
    try:
        run = METHODS[method][0](args.threads)
        run(np.ascontiguousarray(sinos[::step, :, (n - small) // 2:(n + small) // 2]), angles[::step])
    except Exception as err:  # a peer failing is a result to report, not a crash
        res.skipped = f"failed: {type(err).__name__}: {err}"
        return res, None
    return res, run


def bench_case(methods: list[str], n: int, args: argparse.Namespace,
               case: tuple[np.ndarray, np.ndarray]) -> list[Result]:
    """Warm up, time and score every method on one case.

    Runs are interleaved (ours, peer, peer, ..., ours, peer, ...) so that load from other
    processes on a shared machine falls on every method alike; a method stops repeating once
    its runs took ``args.budget_s``.
    """
    sinos, angles = case
    prepared = [_prepare(m, n, args, case) for m in methods]
    spent = dict.fromkeys(methods, 0.0)
    recs: dict[str, np.ndarray] = {}
    for rep in range(max(1, args.repeats)):
        for res, run in prepared:
            if run is None or res.skipped or (rep and spent[res.method] >= args.budget_s):
                continue
            t0 = time.perf_counter()
            try:
                recs[res.method] = run(sinos, angles)
            except Exception as err:  # a peer failing is a result to report, not a crash
                res.skipped = f"failed: {type(err).__name__}: {err}"
                continue
            dt = time.perf_counter() - t0
            spent[res.method] += dt
            res.times_ms.append(1e3 * dt / sinos.shape[1])
    for res, _ in prepared:
        if res.times_ms and not res.skipped:
            res.runs = len(res.times_ms)
            res.ms_per_slice = statistics.median(res.times_ms)
            res.rmse = _rmse(np.asarray(recs[res.method]), _truth(n, METHODS[res.method][1]))
    return [res for res, _ in prepared]


def _report(results: list[Result]) -> str:
    lines = [f"{'case':>12} {'method':>8} {'ms/slice':>10} {'runs':>4} {'peer/ours':>9} {'RMSE':>8} {'RMSE/ours':>9}"]
    for (n, na) in dict.fromkeys((r.n, r.n_angles) for r in results):
        rows = [r for r in results if (r.n, r.n_angles) == (n, na)]
        ours = next((r for r in rows if r.method == "ours" and r.ms_per_slice), None)
        for r in rows:
            case = f"{n}/{na}"
            if r.skipped:
                lines.append(f"{case:>12} {r.method:>8}  skipped: {r.skipped}")
                continue
            speed = f"{r.ms_per_slice / ours.ms_per_slice:9.2f}" if ours else f"{'-':>9}"
            err = f"{r.rmse / ours.rmse:9.3f}" if ours else f"{'-':>9}"
            lines.append(f"{case:>12} {r.method:>8} {r.ms_per_slice:10.1f} {r.runs:4d} {speed} {r.rmse:8.4f} {err}")
        peers = [r for r in rows if r.method != "ours" and r.ms_per_slice]
        if ours and peers:
            fastest = min(peers, key=lambda r: r.ms_per_slice)
            best = min(peers, key=lambda r: r.rmse)
            lines.append(f"{'':>12} ours is {fastest.ms_per_slice / ours.ms_per_slice:.2f}x faster than the fastest "
                         f"peer ({fastest.method}); RMSE {ours.rmse / best.rmse:.3f}x the best peer's ({best.method})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run every method on every case and print the table."""
    import numba

    threads = max(1, int(args.threads))
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    methods = ["ours"] + [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown peer(s) {', '.join(unknown)}; choose from astra, algotom, skimage")
    t0 = time.perf_counter()
    from analysis.fbp import fbp_slice  # numba kernels load (from cache after the first run)
    fbp_slice(np.zeros((8, 32), np.float32), np.linspace(0, np.pi, 8, endpoint=False))
    print(f"threads {threads}; first call of our FBP (import, compile or cache load): "
          f"{time.perf_counter() - t0:.2f} s; photons {PHOTONS:g}, filter ram-lak", flush=True)
    results = []
    for n, n_angles in _sizes(args):
        sinos, angles, _ = make_case(n, n_angles, threads)
        for res in bench_case(methods, n, args, (sinos, angles)):
            print(f"  {n}/{n_angles} {res.method}: " + (res.skipped or f"{res.ms_per_slice:.1f} ms/slice "
                  f"(best {min(res.times_ms):.1f}), RMSE {res.rmse:.4f} ({res.runs} runs)"), flush=True)
            results.append(res)
    print(_report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in results], f, indent=1)
    return 0

"""Analysis results of an operando experiment: what the catalog holds, what goes where on disk.

Shared by the live consumer (``tomocycle consume``) and the offline path (``tomocycle analyze``)
so both write the same files, made by the same functions, in the same order. The layout under
``DATA/analysis/<experiment_id>/`` is documented in docs/live.md (the monitor reads it).

A timestep's numbers depend only on the stored scans (the catalog and the frame files are the
source of truth), never on which documents a consumer happened to receive: a consumer that was
killed, started late or lost messages writes the same results as one that saw everything.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from analysis.particle_series import analyze_volumes
from analysis.reconstruction import ReconOptions
from analysis.timestep import TimestepVolume, class_fractions, orthogonal_slices, reconstruct_file
from analysis.volume_io import read_volume_h5, volume_attrs, write_volume_h5
from controller.images import display_window, png_bytes, shrink

log = logging.getLogger(__name__)

#: Sub-folder of a data directory holding analysis results, one folder per experiment.
ANALYSIS_DIR = "analysis"
#: Written last in a timestep's folder: its presence means the timestep is complete.
RESULT_FILE = "result.json"
SUMMARY_FILE = "summary.json"
SLICE_NAMES = ("xy", "xz", "yz")


class AnalysisError(ValueError):
    """An experiment cannot be analysed (unknown id, no finished scan ...): the operator's to fix."""


@dataclass(frozen=True)
class ScanEntry:
    """One timestep of an experiment as the catalog records it (the last successful attempt)."""

    uid: str
    timestep: str
    index: int
    frames_file: Path
    time_s: float
    voltage: float
    current: float
    charge_Ah: float
    soc: float

    def to_json(self) -> dict[str, Any]:
        """JSON-safe fields."""
        d = asdict(self)
        d["frames_file"] = str(self.frames_file)
        return d


@dataclass
class ExperimentInfo:
    """An experiment's identity and its finished scans, oldest first."""

    experiment_id: str
    protocol: str
    cell_preset: str
    scans: list[ScanEntry] = field(default_factory=list)
    finished: bool = False  #: the electrochemistry run has a stop document


def analysis_root(data_dir: str | os.PathLike[str], experiment_id: str) -> Path:
    """``DATA/analysis/<experiment_id>``."""
    return Path(data_dir) / ANALYSIS_DIR / experiment_id


def frames_file(run: Any) -> Path | None:
    """The HDF5 file holding a stored scan's frames (from the catalog's data source), or None."""
    try:
        start = run.metadata["start"]
        key = f"{start['detectors'][0]}_image"
        uri = run["primary"][key].data_sources()[0].assets[0].data_uri
    except (KeyError, IndexError, AttributeError):
        return None
    return Path(uri.replace("file://localhost", "", 1).replace("file://", "", 1))


def _timestep_index(label: str) -> int:
    # Labels are T0, T1, ... (controller.decider); order by number, not text (T10 after T9).
    try:
        return int(str(label).lstrip("T"))
    except ValueError:
        return 1 << 30


def list_experiments(client: Any) -> list[str]:
    """Experiment ids of the operando runs in a catalog, oldest first."""
    found = []
    for _, run in client.items():  # items(): metadata comes in pages, not one request per run
        start = run.metadata["start"]
        if start.get("plan_name") == "operando" and start.get("experiment_id"):
            found.append((float(start.get("time", 0.0)), start["experiment_id"]))
    return [eid for _, eid in sorted(set(found))]


def runs_of_experiment(client: Any, experiment_id: str) -> list[tuple[str, Any]]:
    """(uid, run) of every run whose start document names ``experiment_id`` (a catalog query)."""
    from tiled.queries import Key

    return list(client.search(Key("start.experiment_id") == experiment_id).items())


def experiment_info(client: Any, experiment_id: str) -> ExperimentInfo:
    """The experiment's finished, successful scans from the catalog (last attempt per timestep).

    Raises
    ------
    AnalysisError
        If the catalog has no run of that experiment.
    """
    info: ExperimentInfo | None = None
    best: dict[str, tuple[float, Any]] = {}
    seen = False
    for _, run in runs_of_experiment(client, experiment_id):
        start = run.metadata["start"]
        if start.get("experiment_id") != experiment_id:
            continue
        seen = True
        stop = run.metadata.get("stop") or {}
        if start.get("plan_name") == "operando":
            cell = start.get("cell") or {}
            info = ExperimentInfo(experiment_id, str(start.get("protocol", "")), str(cell.get("preset", "")),
                                  finished=bool(stop))
        elif start.get("plan_name") == "tomo_scan" and stop.get("exit_status") == "success":
            label = str(start.get("timestep"))
            if label not in best or float(start["time"]) > best[label][0]:
                best[label] = (float(start["time"]), run)
    if not seen:
        raise AnalysisError(f"experiment {experiment_id!r}: no run of it in the catalog")
    if info is None:  # scans without their electrochemistry run (a partial copy of a catalog)
        info = ExperimentInfo(experiment_id, "", "")
    for label, (_, run) in best.items():
        path = frames_file(run)
        if path is None:
            continue
        start = run.metadata["start"]
        at = start.get("at_scan") or {}
        trig = start.get("trigger") or {}
        info.scans.append(ScanEntry(uid=start["uid"], timestep=label, index=_timestep_index(label),
                                    frames_file=path, time_s=float(at.get("time_s", np.nan)),
                                    voltage=float(at.get("voltage", np.nan)),
                                    current=float(at.get("current", np.nan)),
                                    charge_Ah=float(at.get("charge_Ah", np.nan)),
                                    soc=float(trig.get("soc", np.nan))))
    info.scans.sort(key=lambda s: s.index)
    return info


def lithiated_index(scans: Sequence[ScanEntry], cell_preset: str) -> int:
    """Index of the most lithiated scan so far (``analyze_volumes``' ``lithiated_at``).

    Silicon lithiates when a full cell charges (state of charge up) and when a Si-vs-Li half cell
    discharges (state of charge down); the cell models' SoC rises on charge.
    """
    soc = np.array([s.soc for s in scans], dtype=float)
    if not np.isfinite(soc).any():
        return len(scans) - 1
    soc = np.where(np.isfinite(soc), soc, np.nan)
    return int(np.nanargmin(soc) if "half" in cell_preset else np.nanargmax(soc))


# ---------------------------------------------------------------------------------- files
def _atomic_json(path: Path, data: Any) -> None:
    # A reader (the monitor) polls these files: never let it see half a file.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=_json_default), encoding="utf-8")
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _finite(value: Any) -> Any:
    # JSON has no NaN: None instead, so browsers parse it.
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


#: Largest side of a live preview's PNGs (see :func:`write_slices`).
PREVIEW_PNG_PX = 1024


def write_slices(folder: Path, slices: dict[str, np.ndarray], stem: str = "slice", *,
                 fast: bool = False) -> dict[str, str]:
    """``<stem>s.npz`` and one PNG per slice (``<stem>_xy.png`` ...); names relative to ``folder``.

    The final slices are ``slices.npz`` and ``slice_xy.png`` ...; the live preview's
    ``preview_slices.npz`` and ``preview_xy.png`` ... The PNGs share one grey window (the 1st
    and 99th percentiles of the three). ``fast`` (the preview, rewritten every few seconds
    during a scan) stores the arrays uncompressed and the PNGs at zlib level 1, averaged down to
    at most :data:`PREVIEW_PNG_PX` pixels a side (the arrays keep full resolution): a 2048-pixel
    slice is shown smaller than that on any screen, and encoding it whole cost 4x more.
    """
    npz = "slices.npz" if stem == "slice" else f"{stem}_slices.npz"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{stem}.tmp.npz"
    (np.savez if fast else np.savez_compressed)(tmp, **slices)
    os.replace(tmp, folder / npz)
    out = {"npz": npz}
    window = display_window(slices.values(), (1.0, 99.0))
    for name, img in slices.items():
        png = folder / f"{stem}_{name}.png"
        tmp_png = folder / f".{stem}_{name}.tmp.png"
        shown = shrink(img, PREVIEW_PNG_PX) if fast else img
        tmp_png.write_bytes(png_bytes(shown, window, level=1 if fast else 6))
        os.replace(tmp_png, png)
        out[name] = png.name
    return out


def write_timestep_volume(root: Path, entry: ScanEntry, recon: TimestepVolume) -> dict[str, str]:
    """``<timestep>/volume.h5`` and the orthogonal slices of it; the slice paths (relative to root)."""
    folder = root / entry.timestep
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".volume.tmp.h5"
    write_volume_h5(tmp, recon.volume, {"voxel_size_um": recon.voxel_size_um, "center_px": recon.center_px,
                                        "scan_uid": entry.uid, "timestep": entry.timestep})
    os.replace(tmp, folder / "volume.h5")
    rel = write_slices(folder, orthogonal_slices(recon.volume))
    return {k: f"{entry.timestep}/{v}" for k, v in rel.items()}


def series_numbers(root: Path, info: ExperimentInfo, upto: int, *, write_tables: bool,
                   volumes: Sequence[np.ndarray] | None = None, cache: dict | None = None) -> dict[str, Any]:
    """Particle analysis of timesteps ``0..upto`` (volumes from ``<timestep>/volume.h5``).

    Returns the numbers of timestep ``upto`` as of that analysis: class fractions, particle
    count, electrode thickness, the summary sentence. With ``write_tables`` the series tables
    and plots (particles.csv, electrode.csv, summary.txt, PNGs) go to ``root``. ``cache`` (one
    dict per experiment, kept by the caller) spares re-segmenting the timesteps analysed before:
    see :func:`analysis.particle_series.analyze_volumes`.
    """
    scans = info.scans[: upto + 1]
    cache = {} if cache is None else cache
    if "voxel_size_um" not in cache:
        cache["voxel_size_um"] = volume_attrs(root / scans[0].timestep / "volume.h5").get("voxel_size_um")

    def vols() -> Iterable[np.ndarray | None]:
        for i, s in enumerate(scans):
            if i in cache:  # measured before: the analysis does not look at it again
                yield None
            elif volumes is not None:
                yield volumes[i]
            else:
                yield read_volume_h5(root / s.timestep / "volume.h5")[0]

    res = analyze_volumes(vols(), float(cache["voxel_size_um"] or 1.0), lithiated_index(scans, info.cell_preset),
                          out_dir=root if write_tables else None, labels=[s.timestep for s in scans],
                          dvc=False, cache=cache)
    row = res.electrode[-1]
    return {"class_fractions": class_fractions(res.classes), "n_particles": int(len(res.classes)),
            "thickness_um": _finite(float(row["thickness_um"])), "lithiated_at": res.lithiated_at,
            "sentence": res.summary.get("sentence", "")}


def write_result(root: Path, entry: ScanEntry, slices: dict[str, str], numbers: dict[str, Any]) -> dict[str, Any]:
    """``<timestep>/class_fractions.json`` and ``<timestep>/result.json`` (the completion marker)."""
    folder = root / entry.timestep
    _atomic_json(folder / "class_fractions.json", numbers["class_fractions"])
    result = {**entry.to_json(), "time_s": _finite(entry.time_s), "voltage": _finite(entry.voltage),
              "class_fractions": numbers["class_fractions"], "n_particles": numbers["n_particles"],
              "thickness_um": numbers["thickness_um"], "lithiated_at": numbers["lithiated_at"],
              "sentence": numbers["sentence"], "slices": slices}
    _atomic_json(folder / RESULT_FILE, result)
    return result


def done_timesteps(root: Path) -> set[str]:
    """Timesteps whose result.json exists."""
    if not root.is_dir():
        return set()
    return {p.parent.name for p in root.glob(f"*/{RESULT_FILE}")}


def write_summary(root: Path, info: ExperimentInfo, live: dict[str, Any] | None = None) -> Path:
    """``summary.json``: one entry per finished timestep (in order), the series tables, the live scan."""
    steps = []
    for s in info.scans:
        path = root / s.timestep / RESULT_FILE
        if not path.exists():
            break  # timesteps are analysed in order; a gap means the rest is not done yet
        r = json.loads(path.read_text(encoding="utf-8"))
        steps.append({k: r.get(k) for k in ("timestep", "time_s", "voltage", "current", "charge_Ah", "soc",
                                             "uid", "class_fractions", "n_particles", "thickness_um",
                                             "slices")})
    summary = {"experiment_id": info.experiment_id, "protocol": info.protocol, "cell_preset": info.cell_preset,
               "updated": time.time(), "experiment_finished": info.finished, "timesteps": steps,
               "latest_slices": steps[-1]["slices"] if steps else None,
               "tables": {name: name for name in ("particles.csv", "electrode.csv", "summary.txt")
                          if (root / name).exists()},
               "live": live}
    root.mkdir(parents=True, exist_ok=True)
    _atomic_json(root / SUMMARY_FILE, summary)
    return root / SUMMARY_FILE


# ------------------------------------------------------------------------ analysis runs
def has_analysis_run(client: Any, experiment_id: str, timestep: str, scan_uid: str) -> bool:
    """Whether the catalog already holds the analysis run of this timestep (restarts write it once)."""
    for _, run in runs_of_experiment(client, experiment_id):
        start = run.metadata["start"]
        if (start.get("kind") == "analysis" and start.get("experiment_id") == experiment_id
                and start.get("timestep") == timestep and start.get("scan_uid") == scan_uid):
            return True
    return False


def record_analysis_run(client: Any, info: ExperimentInfo, result: dict[str, Any]) -> str:
    """Write one bluesky run (start, one event in "primary", stop) with a timestep's numbers."""
    from event_model import compose_run

    from controller.catalog import make_writer

    writer = make_writer(client)
    fr = result["class_fractions"]
    data = {**{f"fraction_{k}": float(v) for k, v in fr.items()},
            "n_particles": int(result["n_particles"]),
            "thickness_um": float("nan") if result["thickness_um"] is None else float(result["thickness_um"])}
    md = {"plan_name": "analysis", "kind": "analysis", "experiment_id": info.experiment_id,
          "timestep": result["timestep"], "scan_uid": result["uid"], "protocol": info.protocol,
          "class_fractions": fr, "thickness_um": result["thickness_um"], "n_particles": result["n_particles"],
          "lithiated_at": result["lithiated_at"], "slices": result["slices"]}
    bundle = compose_run(metadata=md)
    writer("start", bundle.start_doc)
    keys = {k: {"source": "analysis", "dtype": "number" if not k.startswith("n_") else "integer", "shape": []}
            for k in data}
    desc = bundle.compose_descriptor(name="primary", data_keys=keys)
    writer("descriptor", desc.descriptor_doc)
    now = time.time()
    writer("event", desc.compose_event(data=data, timestamps={k: now for k in data}))
    writer("stop", bundle.compose_stop(exit_status="success"))
    return bundle.start_doc["uid"]


# ------------------------------------------------------------------------- one timestep
#: Widest slice a timestep's analysis reconstructs unless told otherwise (``--max-side``): a
#: 2048-pixel detector is binned 4x, a 512^3 volume whose analysis takes about a minute on 2
#: cores, where the full 2048^3 would need 34 GB and hours, longer than 002's 30 minutes between
#: scans. The simulated presets' detectors are narrower and stay unbinned.
ANALYSIS_MAX_SIDE = 512


def finish_timestep(client: Any, data_dir: str | os.PathLike[str], info: ExperimentInfo, k: int, *,
                    recon: TimestepVolume | None = None, opts: ReconOptions = ReconOptions(),
                    record: bool = True, volumes: Sequence[np.ndarray] | None = None,
                    max_side: int | None = ANALYSIS_MAX_SIDE, cache: dict | None = None) -> dict[str, Any]:
    """Everything for timestep ``info.scans[k]``: volume, slices, series analysis up to it, result, run.

    ``recon`` is the reconstruction when it was made elsewhere (a Dask worker); otherwise it is
    made here from the scan's frame file, binned to ``max_side`` (see
    :func:`analysis.timestep.reconstruct_file`). ``cache``: see :func:`series_numbers`.
    """
    root = analysis_root(data_dir, info.experiment_id)
    entry = info.scans[k]
    if recon is None:
        recon = reconstruct_file(entry.frames_file, opts, max_side=max_side)
    slices = write_timestep_volume(root, entry, recon)
    numbers = series_numbers(root, info, k, write_tables=True, volumes=volumes, cache=cache)
    if record and not has_analysis_run(client, info.experiment_id, entry.timestep, entry.uid):
        record_analysis_run(client, info, {**entry.to_json(), **numbers, "slices": slices})
    result = write_result(root, entry, slices, numbers)
    write_summary(root, info)
    return result


# ------------------------------------------------------------------------------ offline
def analyze_experiment(data_dir: str | os.PathLike[str], experiment_id: str, *, scheduler: str | None = None,
                       opts: ReconOptions = ReconOptions(), record: bool = True,
                       progress: Callable[[str], None] | None = None,
                       max_side: int | None = ANALYSIS_MAX_SIDE) -> Path:
    """Reconstruct and analyse every finished timestep of a stored experiment.

    Parameters
    ----------
    data_dir
        The data directory (catalog and frames).
    experiment_id
        The experiment (``tomocycle runs`` shows ids in the operando runs' metadata).
    scheduler
        None: all in this process. ``"local"``: a Dask LocalCluster on this machine. Otherwise a
        Dask scheduler address (``tcp://host:8786``); its workers must see the frame files at the
        same paths. Reconstructions of all timesteps run in parallel there; the particle analysis,
        which needs the volumes in order, runs here.
    opts
        Reconstruction options.
    record
        Also write the analysis runs into the catalog (once per timestep).
    max_side
        Bin the reconstructions to at most this width (:data:`ANALYSIS_MAX_SIDE`, as the live
        consumer does; None or 0: full resolution).
    progress
        Called with a line of text as each timestep finishes.

    Returns
    -------
    Path
        ``DATA/analysis/<experiment_id>``.
    """
    from controller.catalog import open_catalog

    client = open_catalog(data_dir, create=False)
    info = experiment_info(client, experiment_id)
    if not info.scans:
        raise AnalysisError(f"experiment {experiment_id!r}: no finished scan to analyse")
    recons = _reconstruct_all([s.frames_file for s in info.scans], opts, scheduler, max_side)
    volumes, cache = [r.volume for r in recons], {}
    for k, recon in enumerate(recons):
        result = finish_timestep(client, data_dir, info, k, recon=recon, opts=opts, record=record,
                                 volumes=volumes, cache=cache)
        if progress is not None:
            fr = ", ".join(f"{n} {v:.0%}" for n, v in result["class_fractions"].items() if v)
            progress(f"{result['timestep']}: thickness {result['thickness_um']} um; {fr or 'no particles'}")
    return analysis_root(data_dir, experiment_id)


def _reconstruct_all(paths: Sequence[Path], opts: ReconOptions, scheduler: str | None,
                     max_side: int | None) -> list[TimestepVolume]:
    if scheduler is None:
        return [reconstruct_file(p, opts, max_side=max_side) for p in paths]
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise AnalysisError("--scheduler needs dask: pip install 'tomocycle[dask]'") from None
    if scheduler == "local":
        # Processes, one thread each: numba's own threads do the parallel work inside a worker.
        cluster = LocalCluster(n_workers=min(len(paths), os.cpu_count() or 1), threads_per_worker=1,
                               processes=True, dashboard_address=None)
        with cluster, Client(cluster) as dask_client:
            return dask_client.gather(dask_client.map(reconstruct_file, [str(p) for p in paths], opts=opts,
                                                      max_side=max_side, pure=False))
    with Client(scheduler) as dask_client:
        return dask_client.gather(dask_client.map(reconstruct_file, [str(p) for p in paths], opts=opts,
                                                  max_side=max_side, pure=False))

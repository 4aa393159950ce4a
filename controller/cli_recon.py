"""``tomocycle recon FILE``: reconstruct an NXtomo or Data Exchange file into an HDF5 volume."""

from __future__ import annotations

import argparse
from pathlib import Path


def _center(text: str) -> str | float:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--center must be 'auto' or a pixel position, got {text!r}") from None


def _cone(text: str) -> tuple[float, float]:
    try:
        sod, sdd = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--cone needs SOD_MM,SDD_MM (e.g. 58,500), got {text!r}") from None
    return sod, sdd


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``recon`` sub-command."""
    p = sub.add_parser("recon", help="reconstruct a tomography file (NXtomo or Data Exchange) into a volume")
    p.add_argument("file", type=Path, help="NXtomo or Data Exchange HDF5 file")
    p.add_argument("-o", "--output", type=Path, default=None, help="output HDF5 file (default: FILE_recon.h5)")
    p.add_argument("--center", type=_center, default="auto", metavar="auto|X",
                   help="rotation axis in detector pixels, or 'auto' (default)")
    p.add_argument("--paganin", type=float, default=None, metavar="DELTA_BETA",
                   help="Paganin phase retrieval with this delta/beta (e.g. 170 or 35)")
    p.add_argument("--energy-kev", type=float, default=None, help="photon energy for --paganin (default: file's, or 20)")
    p.add_argument("--distance-m", type=float, default=None, help="propagation distance for --paganin (default: file's, or 0.1)")
    p.add_argument("--pixel-size-um", type=float, default=None, help="pixel size at the sample (default: file's)")
    p.add_argument("--rings", action="store_true", help="remove ring artefacts (sorting-based stripe filter)")
    p.add_argument("--zingers", action="store_true", help="remove zingers (3x3 median outliers)")
    p.add_argument("--bin", type=int, default=1, metavar="N", help="bin N x N pixels first (previews)")
    p.add_argument("--filter", dest="filter_name", default="shepp-logan",
                   help="ram-lak, shepp-logan (default), cosine, hamming or hann")
    p.add_argument("--cone", type=_cone, default=None, metavar="SOD_MM,SDD_MM",
                   help="cone-beam lab CT (FDK), e.g. 58,500 for the 000 micro-CT")
    p.add_argument("--detector-pixel-mm", type=float, default=None,
                   help="cone beam: detector pixel (default: voxel size x SDD / SOD)")
    p.add_argument("--tiff", type=Path, default=None, metavar="DIR", help="also write a float32 TIFF stack here")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _options(args: argparse.Namespace, metadata: dict):
    from analysis.fdk import ConeBeam
    from analysis.reconstruction import ReconOptions

    cone = None
    if args.cone is not None:
        voxel_um = args.pixel_size_um or metadata.get("voxel_size_um") or metadata.get("pixel_size_um")
        if voxel_um is None:
            raise ValueError("--cone needs the voxel size: pass --pixel-size-um")
        sod, sdd = args.cone
        voxel_mm = voxel_um * args.bin / 1000.0
        cone = ConeBeam(source_object_mm=sod, source_detector_mm=sdd, voxel_size_mm=voxel_mm,
                        detector_pixel_mm=(args.detector_pixel_mm or voxel_um / 1000.0 * sdd / sod) * args.bin)
    return ReconOptions(center=args.center, filter_name=args.filter_name, bin=args.bin, rings=args.rings,
                        zingers=args.zingers, delta_beta=args.paganin, energy_kev=args.energy_kev,
                        distance_m=args.distance_m, pixel_size_um=args.pixel_size_um, cone=cone)


def run(args: argparse.Namespace) -> int:
    """Read, reconstruct with a progress bar, write ``/volume``; return the exit code."""
    from tqdm import tqdm

    from analysis.reconstruction import reconstruct
    from analysis.readers import read_tomo
    from analysis.volume_io import write_tiff_stack, write_volume_h5

    if not args.file.is_file():
        raise FileNotFoundError(f"{args.file}: no such file")
    data = read_tomo(args.file, bin=args.bin, zingers=args.zingers)  # binned as read: bounded memory
    opts = _options(args, data.metadata)
    out = args.output or args.file.with_name(args.file.stem + "_recon.h5")
    with tqdm(total=1, unit="row", desc="recon", disable=args.quiet) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
        result = reconstruct(data, opts, progress=progress, where=f"{args.file}: ")
    attrs = {"voxel_size_um": result.voxel_size_um if result.voxel_size_um is not None else float("nan"),
             "center_px": result.center_px, "filter": opts.filter_name, "bin": opts.bin,
             "source_file": str(args.file), "geometry": "cone" if opts.cone else "parallel",
             "delta_beta": opts.delta_beta or 0.0, "rings": opts.rings, "units": "attenuation per voxel"}
    write_volume_h5(out, result.volume, attrs)
    for note in result.notes:
        print(f"note: {note}")
    print(f"volume: {out}  {result.volume.shape} float32, centre {result.center_px:.2f} px, "
          f"voxel {attrs['voxel_size_um']:.4g} um")
    if args.tiff is not None:
        paths = write_tiff_stack(args.tiff, result.volume)
        print(f"tiff:   {args.tiff}/  ({len(paths)} slices)")
    return 0

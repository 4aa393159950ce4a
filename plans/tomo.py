"""Tomography and radiography plans.

``tomo_scan`` takes darks (shutter closed), flats (sample moved out of the beam), projections over
180 or 360 degrees (optionally as interlaced sub-scans whose start angles are offset so that each
subset alone is a complete, coarser scan, as in the 004 paper), and optionally flats again at the
end. Everything goes into one stream ("primary") whose ``<detector>_image_key`` says what each
frame is (0 projection, 1 flat, 2 dark) and ``<detector>_angle`` where the stage stood, exactly as
the NXtomo file does. Step scans take one event per frame; fly scans one detector segment per
block of frames (see :mod:`devices.detector`).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
from bluesky import plan_stubs as bps
from bluesky import preprocessors as bpp
from bluesky.utils import MsgGenerator

from devices.detector import FlySegment
from devices.nxtomo_file import IMAGE_KEYS

from plans.validate import check_scan_parameters


def interlaced_angles(projections: int, angle_range: float = 180.0, subsets: int = 1,
                      start: float = 0.0) -> np.ndarray:
    """Projection angles in acquisition order, in degrees.

    Parameters
    ----------
    projections
        Total number of projections; split as evenly as possible over the subsets.
    angle_range
        Angular range of each subset (180 or 360 degrees); the end angle is not repeated.
    subsets
        Number of interlaced sub-scans (1 = a plain scan). Every subset uses the same step
        ``angle_range / n_per_subset``; subset ``k`` starts at ``start + k * step / subsets``.
    start
        Start angle of the first subset.

    Returns
    -------
    numpy.ndarray
        ``projections`` angles: subset 0's in increasing order, then subset 1's, ...
    """
    check_scan_parameters(projections=projections, angle_range=angle_range, interlaced=subsets)
    per_subset = projections // subsets
    step = angle_range / per_subset
    blocks = []
    for k in range(subsets):
        # The first (projections % subsets) subsets take one extra angle each.
        n = per_subset + (1 if k < projections % subsets else 0)
        blocks.append(start + k * step / subsets + step * np.arange(n))
    return np.concatenate(blocks)


def _frames(detector: Any, readables: Sequence[Any], key: str, count: int) -> MsgGenerator:
    yield from bps.mv(detector.image_key, IMAGE_KEYS[key])
    for _ in range(count):
        yield from bps.trigger_and_read([detector, *readables])


def _flats(detector: Any, sample: Any, readables: Sequence[Any], count: int) -> MsgGenerator:
    if count:
        yield from bps.mv(sample, sample.out_position)
        yield from _frames(detector, readables, "flat", count)
        yield from bps.mv(sample, sample.in_position)


def _segment(detector: Any, kind: str, count: int, angles: Sequence[float] | None = None) -> MsgGenerator:
    """One fly segment: arm, acquire, and publish the frames' references in "primary"."""
    yield from bps.checkpoint()
    yield from bps.prepare(detector, FlySegment(kind, count, None if angles is None else tuple(angles)),
                           wait=True)
    yield from bps.kickoff(detector, wait=True)
    yield from bps.complete(detector, wait=True)
    yield from bps.collect(detector, name="primary")


def _fly_flats(detector: Any, sample: Any, count: int) -> MsgGenerator:
    if count:
        yield from bps.mv(sample, sample.out_position)
        yield from _segment(detector, "flat", count)
        yield from bps.mv(sample, sample.in_position)


def _fly_body(detector: Any, rotation: Any, shutter: Any, sample: Any, angles: np.ndarray,
              subsets: int, darks: int, flats: int, flats_at_end: bool) -> MsgGenerator:
    yield from bps.declare_stream(detector, name="primary", collect=True)
    yield from bps.mv(shutter, "close")
    if darks:
        yield from _segment(detector, "dark", darks)
    yield from bps.mv(shutter, "open")
    yield from _fly_flats(detector, sample, flats)
    for block in np.array_split(angles, _subset_bounds(len(angles), subsets)):
        yield from bps.mv(rotation, float(block[0]))
        yield from _segment(detector, "projection", len(block), block.tolist())
        # The camera took its frames as the stage swept through the block (position-compare
        # triggering); the stage's own record of where it is follows the sweep's end.
        yield from bps.mv(rotation, float(block[-1]))
    if flats_at_end:
        yield from _fly_flats(detector, sample, flats)
    yield from bps.mv(shutter, "close")


def _subset_bounds(total: int, subsets: int) -> list[int]:
    """Split indices of :func:`interlaced_angles` output into its subsets."""
    per, extra = divmod(total, subsets)
    sizes = [per + (1 if k < extra else 0) for k in range(subsets)]
    return list(np.cumsum(sizes)[:-1])


def _step_body(detector: Any, rotation: Any, shutter: Any, sample: Any, readables: Sequence[Any],
               angles: np.ndarray, darks: int, flats: int, flats_at_end: bool) -> MsgGenerator:
    yield from bps.mv(shutter, "close")
    yield from _frames(detector, readables, "dark", darks)
    yield from bps.mv(shutter, "open")
    yield from _flats(detector, sample, readables, flats)
    yield from bps.mv(detector.image_key, IMAGE_KEYS["projection"])
    for angle in angles:
        yield from bps.checkpoint()
        yield from bps.mv(rotation, float(angle))
        yield from bps.trigger_and_read([detector, *readables])
    if flats_at_end:
        yield from _flats(detector, sample, readables, flats)
    yield from bps.mv(shutter, "close")


def tomo_scan(detector: Any, rotation: Any, shutter: Any, sample: Any, *, projections: int,
              angle_range: float = 180.0, exposure: float = 0.1, darks: int = 10, flats: int = 10,
              flats_at_end: bool = False, interlaced: int = 1, start_angle: float = 0.0,
              fly: bool = False, readables: Iterable[Any] = (),
              md: dict[str, Any] | None = None) -> MsgGenerator:
    """One tomogram: darks, flats, projections (interlaced if asked), optional final flats.

    Parameters
    ----------
    detector
        A ``TomoDetector``.
    rotation, sample
        Rotation stage (degrees) and sample translation (its ``out_position`` is used for flats).
    shutter
        Closed for darks and at the end.
    projections, angle_range, interlaced, start_angle
        See :func:`interlaced_angles`.
    exposure
        Exposure time per frame, s.
    darks, flats
        Number of dark and flat frames before the projections.
    flats_at_end
        Take ``flats`` flats again after the projections (beam drift correction).
    fly
        Fly scan: each block of frames (darks, flats, each interlaced subset of projections) is
        one detector segment taken as the stage sweeps, recorded as stream references to the
        file (frames, ``<detector>_image_key``, ``<detector>_angle``). Otherwise step and shoot:
        one event per frame with the key, the angle and ``readables`` inline.
    readables
        Extra devices read with every frame in step mode (e.g. the potentiostat, so V is
        recorded per frame); a fly scan records none.
    md
        Metadata merged into the start document.

    Yields
    ------
    bluesky messages; the run has a single "primary" stream.
    """
    check_scan_parameters(projections=projections, angle_range=angle_range, exposure=exposure,
                          darks=darks, flats=flats, interlaced=interlaced)
    angles = interlaced_angles(projections, angle_range, interlaced, start_angle)
    readables = [rotation, *readables]
    total = darks + flats * (2 if flats_at_end else 1) + projections
    scan_args = {"projections": projections, "angle_range": angle_range, "exposure": exposure,
                 "darks": darks, "flats": flats, "flats_at_end": flats_at_end,
                 "interlaced": interlaced, "start_angle": start_angle, "fly": fly}
    _md = {
        "plan_name": "tomo_scan", "plan_args": dict(scan_args), "plan_type": "generator",
        "detectors": [detector.name], "motors": [rotation.name], "num_points": total,
        "num_intervals": total - 1, "scan": scan_args, "image_key": dict(IMAGE_KEYS),
        "hints": {"dimensions": [([rotation.name], "primary")]},
        **(md or {}),
    }

    @bpp.stage_decorator([detector])
    @bpp.run_decorator(md=_md)
    def inner() -> MsgGenerator:
        yield from bps.mv(detector.exposure_time, exposure)
        if fly:
            yield from _fly_body(detector, rotation, shutter, sample, angles, interlaced, darks, flats,
                                 flats_at_end)
        else:
            yield from _step_body(detector, rotation, shutter, sample, readables, angles, darks, flats,
                                  flats_at_end)

    def close_shutter() -> MsgGenerator:
        # A failed scan must not leave the beam on the cell.
        yield from bps.mv(shutter, "close")

    return (yield from bpp.finalize_wrapper(inner(), close_shutter()))


def radiography(detector: Any, shutter: Any, sample: Any, clock: Any, *, images: int, period: float,
                exposure: float = 0.1, darks: int = 0, flats: int = 0, readables: Iterable[Any] = (),
                md: dict[str, Any] | None = None) -> MsgGenerator:
    """A timed series of 2D images without rotation (000's radiography during cycling).

    Parameters
    ----------
    detector, shutter, sample
        As for :func:`tomo_scan`.
    clock
        A ``CellClock``: the wait between images runs on the cell's clock (virtual or real).
    images
        Number of images.
    period
        Time between the starts of consecutive images, s (>= exposure).
    exposure
        Exposure per image, s.
    darks, flats
        Reference frames taken first.
    readables
        Extra devices read with every image (e.g. the potentiostat).
    md
        Metadata merged into the start document.
    """
    check_scan_parameters(projections=images, exposure=exposure, darks=darks, flats=flats)
    if not period >= exposure:
        raise ValueError(f"period must be >= exposure ({exposure} s), got {period!r} s")
    readables = [clock, *readables]
    _md = {
        "plan_name": "radiography", "plan_type": "generator", "detectors": [detector.name],
        "plan_args": {"images": images, "period": period, "exposure": exposure, "darks": darks, "flats": flats},
        "num_points": images + darks + flats, "image_key": dict(IMAGE_KEYS),
        "hints": {"dimensions": [([f"{clock.name}_time"], "primary")]},
        **(md or {}),
    }

    @bpp.stage_decorator([detector])
    @bpp.run_decorator(md=_md)
    def inner() -> MsgGenerator:
        yield from bps.mv(detector.exposure_time, exposure)
        yield from bps.mv(shutter, "close")
        yield from _frames(detector, readables, "dark", darks)
        yield from bps.mv(shutter, "open")
        yield from _flats(detector, sample, readables, flats)
        yield from bps.mv(detector.image_key, IMAGE_KEYS["projection"])
        for i in range(images):
            yield from bps.trigger_and_read([detector, *readables])
            if i + 1 < images:
                yield from bps.mv(clock, period - exposure)
        yield from bps.mv(shutter, "close")

    def close_shutter() -> MsgGenerator:
        yield from bps.mv(shutter, "close")

    return (yield from bpp.finalize_wrapper(inner(), close_shutter()))

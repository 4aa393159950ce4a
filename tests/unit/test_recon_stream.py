"""Streaming FBP: equal to batch FBP after the last projection, usable before it."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.fbp import fbp_orthogonal, fbp_slice, fbp_volume
from analysis.stream import StreamingFBP

from .recon_helpers import circle_mask, rmse, shepp

N, NA, ROWS = 96, 120, 5


@pytest.fixture(scope="module")
def scan():
    img, sino, ang = shepp(N, NA)
    stack = np.stack([sino * (1.0 + 0.2 * z) for z in range(ROWS)], axis=1)  # (NA, ROWS, N)
    return img, stack, ang


def test_stream_equals_batch_after_the_last_projection(scan) -> None:
    _, stack, ang = scan
    live = StreamingFBP((ROWS, N), vertical=(30, 61), filter_name="shepp-logan")
    order = np.random.default_rng(0).permutation(NA)  # arrival order does not matter
    for i in order[:7]:
        live.add(stack[i], ang[i])
    for chunk in np.array_split(order[7:], 9):
        live.add_many(stack[chunk], ang[chunk])
    batch = fbp_volume(stack, ang, filter_name="shepp-logan")
    tol = 1e-5 * np.abs(batch).max()  # float32 summation order only
    assert live.n_added == NA
    np.testing.assert_allclose(live.axial(), batch, rtol=0, atol=tol)
    xz, yz = live.vertical()
    np.testing.assert_allclose(xz, batch[:, 30, :], rtol=0, atol=tol)
    np.testing.assert_allclose(yz, batch[:, :, 61], rtol=0, atol=tol)


def test_three_orthogonal_slices_live(scan) -> None:
    _, stack, ang = scan
    live = StreamingFBP((ROWS, N), axial_rows=[2], vertical=(48, 48))
    for i in range(NA):
        live.add(stack[i], ang[i])
    axial, xz, yz = fbp_orthogonal(stack, ang, index=(2, 48, 48))
    tol = 1e-5 * np.abs(axial).max()
    np.testing.assert_allclose(live.axial()[0], axial, rtol=0, atol=tol)
    np.testing.assert_allclose(live.vertical()[0], xz, rtol=0, atol=tol)
    np.testing.assert_allclose(live.vertical()[1], yz, rtol=0, atol=tol)


def test_interlaced_subscans_give_usable_images_early(scan) -> None:
    """004's interlacing: three sub-scans of 40 angles over 180 degrees, offset starts."""
    img, stack, ang = scan
    sub = [np.arange(k, NA, 3) for k in range(3)]  # each an even 40-angle scan
    live = StreamingFBP((ROWS, N), axial_rows=[0])
    mask = circle_mask(N, margin=2)
    errors = []
    for s in sub:
        live.add_many(stack[s], ang[s])
        errors.append(rmse(live.axial()[0], img, mask))
    # After the first sub-scan: exactly the FBP of those 40 angles, and already a fair image.
    first = fbp_slice(stack[sub[0], 0], ang[sub[0]])
    live1 = StreamingFBP((ROWS, N), axial_rows=[0])
    live1.add_many(stack[sub[0]], ang[sub[0]])
    np.testing.assert_allclose(live1.axial()[0], first, rtol=0, atol=1e-5 * np.abs(first).max())
    assert errors[0] < 0.12
    assert errors[2] < errors[1] < errors[0]  # every sub-scan improves it
    full = fbp_slice(stack[:, 0], ang)
    np.testing.assert_allclose(live.axial()[0], full, rtol=0, atol=1e-5 * np.abs(full).max())


def test_bad_input_is_refused() -> None:
    live = StreamingFBP((4, 32), axial_rows=[1])
    with pytest.raises(ValueError, match="no projections added yet"):
        live.axial()
    with pytest.raises(ValueError, match=r"projections must be \(n, 4, 32\)"):
        live.add(np.zeros((4, 31)), 0.0)
    with pytest.raises(ValueError, match="axial_rows must lie in 0..3"):
        StreamingFBP((4, 32), axial_rows=[4])
    with pytest.raises(ValueError, match="made without vertical slices"):
        live.add(np.zeros((4, 32)), 0.0)
        live.vertical()


def test_paired_projections_cost_half_and_stay_close_to_the_exact_image() -> None:
    n, na = 128, 400  # ~3x the angles a 128-pixel slice needs, as 2505 are for a 4x-binned 2048 one
    img, sino, ang = shepp(n, na)
    exact = StreamingFBP((1, n))
    exact.add_many(sino[:, None], ang)
    paired = StreamingFBP((1, n))
    for chunk in np.array_split(np.arange(na), 25):  # batches of 16 in acquisition order
        paired.add_many(sino[chunk][:, None], ang[chunk], pair=True)
    assert paired.n_added == na  # each pair counts as its two projections in the FBP weight
    mask = circle_mask(n)
    error = rmse(exact.axial()[0][mask], img[mask])
    assert rmse(paired.axial()[0][mask], exact.axial()[0][mask]) < 0.15 * error
    assert rmse(paired.axial()[0][mask], img[mask]) < 1.02 * error  # adds < 2 % to the error against truth
    assert abs(paired.axial()[0][mask].mean() - exact.axial()[0][mask].mean()) < 1e-3


def test_projections_far_apart_are_not_paired() -> None:
    from analysis.stream import _pairs

    q = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 1, 3), np.float32)
    sums, at = _pairs(q, np.deg2rad([0.0, 0.1, 90.0, 90.1, 135.0]))
    assert len(sums) == 3 and np.allclose(np.rad2deg(at), [0.05, 90.05, 135.0])
    np.testing.assert_allclose(sums[:, 0, 0], [1.0, 5.0, 4.0])
    sums, at = _pairs(q[:2], np.deg2rad([0.0, 3.0]))
    assert len(sums) == 2


def test_a_deep_volume_streams_through_the_depth_kernel_and_equals_batch() -> None:
    from analysis.backproject import DEPTH_MIN

    rows, n, na = DEPTH_MIN + 6, 40, 37
    _, sino, ang = shepp(n, na)
    stack = np.stack([sino * (1.0 + 0.01 * z) for z in range(rows)], axis=1)  # (na, rows, n)
    live = StreamingFBP((rows, n))
    assert live._depth
    for i, chunk in enumerate(np.array_split(np.arange(na), 6)):
        live.add_many(stack[chunk], ang[chunk])
        if i == 2:  # a look while projections wait for the next pass: they are in the image
            part = fbp_volume(stack[: chunk[-1] + 1], ang[: chunk[-1] + 1])
            np.testing.assert_allclose(live.axial(), part, rtol=0, atol=1e-5 * np.abs(part).max())
    batch = fbp_volume(stack, ang)
    np.testing.assert_allclose(live.axial(), batch, rtol=0, atol=1e-5 * np.abs(batch).max())


def test_batch_volumes_through_the_depth_kernel_equal_the_row_kernel(monkeypatch) -> None:
    import analysis.backproject as bp

    rows, n, na = bp.DEPTH_MIN + 3, 36, bp.DEPTH_ANGLES + 9  # two passes over the volume
    _, sino, ang = shepp(n, na)
    stack = np.stack([sino * (1.0 + 0.01 * z) for z in range(rows)], axis=1)
    depth = fbp_volume(stack, ang)
    monkeypatch.setattr(bp, "DEPTH_MIN", 10**6)
    rows_kernel = fbp_volume(stack, ang)
    np.testing.assert_allclose(depth, rows_kernel, rtol=0, atol=1e-5 * np.abs(rows_kernel).max())

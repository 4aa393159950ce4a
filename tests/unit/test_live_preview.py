"""Live preview (streaming FBP of raw frames) and the per-timestep helpers of analysis.timestep."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.fbp import fbp_volume
from analysis.live_preview import LivePreview
from analysis.prep import minus_log
from analysis.timestep import CLASS_NAMES, class_fractions, orthogonal_slices


def _scan(rows: int = 16, cols: int = 32, n: int = 24) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw frames of a disc: 2 darks, 2 flats, then projections (NXtomo image keys)."""
    angles = np.linspace(0.0, 180.0, n, endpoint=False)
    x = np.arange(cols) - cols / 2 + 0.5
    chord = 2 * np.sqrt(np.clip(64.0 - x**2, 0, None)) * 0.02  # disc of radius 8 px, mu 0.02
    line = np.broadcast_to(chord, (n, rows, cols))
    dark, flat = 100.0, 4000.0
    proj = dark + (flat - dark) * np.exp(-line)
    frames = np.concatenate([np.full((2, rows, cols), dark), np.full((2, rows, cols), flat), proj])
    keys = np.array([2, 2, 1, 1] + [0] * n)
    return frames.astype(np.float32), keys, np.concatenate([np.zeros(4), angles])


def test_preview_equals_fbp_of_the_corrected_projections() -> None:
    frames, keys, angles = _scan()
    preview = LivePreview(frames.shape[1:], bin=2)
    for lo in range(0, len(frames), 5):  # as StreamDatum batches arrive
        preview.add(frames[lo:lo + 5], keys[lo:lo + 5], angles[lo:lo + 5])
    assert preview.n_projections == 24
    trans = (frames[keys == 0] - 100.0) / 3900.0
    expected = fbp_volume(minus_log(trans), np.deg2rad(angles[keys == 0]))
    got = preview.slices()
    np.testing.assert_allclose(got["xy"], expected[8], atol=1e-4)
    np.testing.assert_allclose(got["xz"], expected[:, 16, :], atol=1e-4)
    np.testing.assert_allclose(got["yz"], expected[:, :, 16], atol=1e-4)
    assert preview.volume().shape == (8, 16, 16)


def test_projections_before_flats_wait_for_them() -> None:
    frames, keys, angles = _scan()
    order = np.r_[4:len(frames), 0:4]  # flats and darks at the end
    preview = LivePreview(frames.shape[1:])
    preview.add(frames[order[:-4]], keys[order[:-4]], angles[order[:-4]])
    assert preview.n_projections == 0
    preview.add(frames[order[-4:]], keys[order[-4:]], angles[order[-4:]])
    assert preview.n_projections == 24
    with pytest.raises(ValueError, match="do not match"):
        preview.add(frames[:2], keys[:3], angles[:2])


def test_orthogonal_slices_and_class_fractions() -> None:
    vol = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8)
    s = orthogonal_slices(vol)
    np.testing.assert_array_equal(s["xy"], vol[2])
    np.testing.assert_array_equal(s["xz"], vol[:, 3, :])
    np.testing.assert_array_equal(s["yz"], vol[:, :, 4])
    fr = class_fractions(np.array(["active", "active", "inactive", "unresolved"]))
    assert set(fr) == set(CLASS_NAMES) and fr["active"] == 0.5 and fr["deactivated"] == 0.0
    assert sum(fr.values()) == pytest.approx(1.0)
    assert class_fractions(np.array([], dtype=str))["active"] == 0.0

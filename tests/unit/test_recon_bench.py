"""``tomocycle bench recon`` runs its whole code path cheaply (``--quick``); numbers, no timings."""

from __future__ import annotations

import json

import pytest

import benchmarks.recon as bench
from controller.cli import main


def test_quick_bench_reports_every_method(tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "recon", "--quick", "--repeats", "1", "--peers", "skimage", "--json", str(out)]) == 0
    results = {r["method"]: r for r in json.loads(out.read_text())}
    assert set(results) == {"ours", "skimage"}
    ours, sk = results["ours"], results["skimage"]
    assert ours["n"] == 128 and ours["n_angles"] == 180 and ours["runs"] == 1
    assert ours["ms_per_slice"] > 0 and sk["ms_per_slice"] > 0
    # Same noisy sinograms, same filter and grid: accuracy matches scikit-image's.
    assert ours["rmse"] <= 1.05 * sk["rmse"] and ours["rmse"] < 0.05
    text = capsys.readouterr().out
    assert "peer/ours" in text and "faster than the fastest peer (skimage)" in text


def test_missing_peer_is_skipped_not_an_error(monkeypatch, capsys) -> None:
    monkeypatch.setitem(bench._MODULES, "astra", "no_such_module_for_tomocycle_tests")
    assert main(["bench", "recon", "--quick", "--repeats", "1", "--peers", "astra"]) == 0
    assert "astra  skipped: no_such_module_for_tomocycle_tests not installed" in capsys.readouterr().out


def test_bad_peer_and_sizes_are_refused(capsys) -> None:
    assert main(["bench", "recon", "--peers", "matlab"]) == 2
    assert "unknown peer(s) matlab" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--sizes must look like"):
        bench._sizes(type("A", (), {"quick": False, "sizes": "big"})())


@pytest.mark.parametrize("scan", ["002", "003"])
def test_quick_live_bench_runs_the_consumer(scan: str, capsys) -> None:
    assert main(["bench", "live", "--quick", "--scan", scan]) == 0
    text = capsys.readouterr().out
    interval = {"002": 600 / 2505, "003": 180 / 1501}[scan]
    assert f"one projection every {1e3 * interval:.0f} ms" in text
    assert "64^3 volume (4x binned) + 3 orthogonal 256 x 256 slices" in text
    assert "not a measurement" in text and "ratio acquisition interval / cost" in text


def test_live_view_slices_match_batch_reconstruction() -> None:
    """The benchmark's consumer computes the real thing: its slices equal batch FBP."""
    import numpy as np

    from analysis.fbp import fbp_orthogonal
    from analysis.prep import minus_log, normalise
    from benchmarks.live import LiveView, synthetic_frames

    view = LiveView(64, 4)
    raw, angles = synthetic_frames(16, 64, 0, 16)
    view.add(raw[:8], angles[:8])
    view.add(raw[8:], angles[8:])
    lint = minus_log(normalise(raw, view.flats, view.darks))
    axial, xz, _ = fbp_orthogonal(lint, angles, index=(32, 32, 32))
    np.testing.assert_allclose(view.full.axial()[0], axial, atol=1e-5 * np.abs(axial).max())
    np.testing.assert_allclose(view.full.vertical()[0], xz, atol=1e-5 * np.abs(xz).max())
    assert view.binned.axial().shape == (16, 16, 16)

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
def test_quick_live_bench_follows_a_file_written_at_the_real_pace(scan: str, capsys) -> None:
    assert main(["bench", "live", "--quick", "--scan", scan]) == 0
    text = capsys.readouterr().out
    interval = {"002": 600 / 2505, "003": 180 / 1501}[scan]
    n = round(3.0 / interval)
    assert f"one projection every {1e3 * interval:.0f} ms" in text
    assert "32^3 volume (4x binned) + 3 orthogonal 128 x 128 slices" in text
    # The writer really paced the frames: 3 s of acquisition, not as fast as it could.
    acquired = float(text.split(f"acquired {n} projections in ")[1].split(" s")[0])
    assert 2.9 <= acquired <= 4.0
    assert "final view on disk" in text and "not a measurement" in text


def test_live_bench_refuses_impossible_settings(capsys) -> None:
    assert main(["bench", "live", "--frame", "100", "--bin", "3", "--seconds", "1"]) == 2
    assert "--frame must be >= 16 and a multiple of --bin" in capsys.readouterr().err

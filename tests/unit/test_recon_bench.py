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

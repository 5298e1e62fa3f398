"""`routerforge quickstart` end to end on a small task suite with the real local models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routerforge.backends.llamacpp import installed_local_models
from routerforge.cli.main import main
from routerforge.cli.quickstart import cost_share_at_strong_quality


def test_cost_share_interpolates_the_quality_curve() -> None:
    curve = [[0.0, 0.2], [0.5, 0.4], [1.0, 0.5]]
    share, cost = cost_share_at_strong_quality(curve, 0.45, strong_cost=2.0, weak_cost=1.0)
    assert share == pytest.approx(0.75) and cost == pytest.approx((0.75 * 2 + 0.25 * 1) / 2)
    assert cost_share_at_strong_quality(curve, 0.6, 2.0, 1.0) == (None, None)
    assert cost_share_at_strong_quality([[0.0, 0.5], [1.0, 0.5]], 0.5, 2.0, 1.0) == (0.0, 0.5)


@pytest.mark.llama
@pytest.mark.slow
def test_quickstart_small_run(rf_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if len(installed_local_models()) < 2:
        pytest.skip("the local models are not installed (pip install 'routerforge[local]')")
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--size", "20", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["prompts"] == 20 and len(summary["models"]) == 2
    assert summary["nominal_prices"] and all(v > 0 for v in summary["mean_cost_usd"].values())
    assert (out / "report" / "index.html").is_file() and (out / "report" / "results.json").is_file()
    assert (out / "router").is_dir() and (out / "gateway.yaml").is_file()
    assert "routing" in summary and summary["routing"]["oracle_apgr"] is not None
    saved = json.loads((out / "quickstart.json").read_text(encoding="utf-8"))
    assert saved["report"] == summary["report"]

    from routerforge.gateway.config import load_gateway_config

    gateway = load_gateway_config(out / "gateway.yaml")
    assert [m.id for m in gateway.models] == summary["models"]
    assert gateway.synthetic_models[0].router == str(out / "router")

    # a rerun resumes: every cell is already in the eval set, nothing is called again
    assert main(["quickstart", "--out", str(out), "--size", "20", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["eval_run"]["done"] == 0 and again["eval_run"]["skipped"] == 40


def test_quickstart_out_that_is_a_file_fails_in_one_line(
    rf_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "taken"
    a_file.write_text("keep me", encoding="utf-8")
    assert main(["quickstart", "--out", str(a_file), "--size", "10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file, not a folder" in err
    assert a_file.read_text(encoding="utf-8") == "keep me"

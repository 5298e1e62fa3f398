"""`routerforge quickstart` end to end on a small task suite with the real local models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from routerforge.backends.llamacpp import installed_local_models
from routerforge.cli.main import main
from routerforge.cli.quickstart import STRONG_PRICE_RATIO, cost_share_at_strong_quality, nominal_prices
from routerforge.data.matrix import ScoreMatrix


def test_cost_share_interpolates_the_quality_curve() -> None:
    curve = [[0.0, 0.2], [0.5, 0.4], [1.0, 0.5]]
    share, cost = cost_share_at_strong_quality(curve, 0.45, strong_cost=2.0, weak_cost=1.0)
    assert share == pytest.approx(0.75) and cost == pytest.approx((0.75 * 2 + 0.25 * 1) / 2)
    assert cost_share_at_strong_quality(curve, 0.6, 2.0, 1.0) == (None, None)
    assert cost_share_at_strong_quality([[0.0, 0.5], [1.0, 0.5]], 0.5, 2.0, 1.0) == (0.0, 0.5)


def _matrix(train: list[list[float]], test: list[list[float]]) -> ScoreMatrix:
    rows = train + test
    return ScoreMatrix(
        name="m",
        keys=[f"k{i}" for i in range(len(rows))],
        prompts=[f"p{i}" for i in range(len(rows))],
        models=["small", "big"],
        scores=np.array(rows, dtype=float),
        costs=np.zeros((len(rows), 2)),
        splits=["train"] * len(train) + ["test"] * len(test),
    )


def test_nominal_prices_follow_accuracy_on_the_training_prompts_only() -> None:
    # 'small' is more accurate on the training prompts, 'big' on the test prompts: training decides
    m = _matrix([[1, 0], [1, 0], [0, 1]], [[0, 1], [0, 1], [0, 1], [0, 1]])
    pricing = nominal_prices(m, tie_break={"small": 135, "big": 270})
    assert pricing["strong"] == "small" and pricing["train_prompts"] == 3
    assert pricing["train_accuracy"] == {
        "small": pytest.approx(2 / 3, abs=1e-4),
        "big": pytest.approx(1 / 3, abs=1e-4),
    }
    prices = pricing["usd_per_mtok"]
    assert prices["small"] == pytest.approx(STRONG_PRICE_RATIO * prices["big"]) and prices["big"] > 0
    # a tie goes to the larger model
    tie = nominal_prices(_matrix([[1, 1], [0, 0]], [[1, 0]]), tie_break={"small": 135, "big": 270})
    assert tie["strong"] == "big"


@pytest.mark.llama
@pytest.mark.slow
def test_quickstart_small_run(rf_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if len(installed_local_models()) < 2:
        pytest.skip("the local models are not installed (pip install 'routerforge[local]')")
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--size", "20", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["prompts"] == 20 and len(summary["models"]) == 2
    assert all(v > 0 for v in summary["mean_cost_usd"].values())
    pricing = summary["nominal_prices"]
    strong = pricing["strong"]
    weak = next(m for m in summary["models"] if m != strong)
    from routerforge.tasks import generate_tasks

    n_train = sum(1 for item in generate_tasks(20, seed=0) if item.split == "train")
    assert pricing["train_prompts"] == n_train and "training prompts" in pricing["rule"]
    assert pricing["train_accuracy"][strong] >= pricing["train_accuracy"][weak]
    assert pricing["usd_per_mtok"][strong] == pytest.approx(
        STRONG_PRICE_RATIO * pricing["usd_per_mtok"][weak]
    )
    assert summary["mean_cost_usd"][strong] > summary["mean_cost_usd"][weak]  # the stronger one costs more
    assert (out / "report" / "index.html").is_file() and (out / "report" / "results.json").is_file()
    assert (out / "router").is_dir() and (out / "gateway.yaml").is_file()
    assert "routing" in summary and summary["routing"]["oracle_apgr"] is not None
    saved = json.loads((out / "quickstart.json").read_text(encoding="utf-8"))
    assert saved["report"] == summary["report"]

    from routerforge.gateway.config import load_gateway_config

    gateway = load_gateway_config(out / "gateway.yaml")
    assert [m.id for m in gateway.models] == summary["models"]
    assert gateway.synthetic_models[0].router == str(out / "router")
    assert {m.id: m.output_usd_per_mtok for m in gateway.models} == pricing["usd_per_mtok"]

    # the quickstart's router works with the CLI: calibrate on its held-out prompts, then route
    router = str(out / "router")
    code = main(["calibrate", router, "--data", "quickstart", "--target", "strong-share=0.3", "--json"])
    calibration = json.loads(capsys.readouterr().out)
    assert code == 0 and calibration["n_heldout"] >= 1
    assert (out / "router" / "calibration.json").is_file()
    assert main(["route", router, "What is 12 + 30?", "--json"]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["model"] in summary["models"] and decision["policy"] == "threshold"
    assert decision["knob"] == pytest.approx(calibration["knob"]["threshold"])  # the calibrated knob

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

"""`routerforge bench | train | route | calibrate | router export/import` through the real CLI."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from routerforge.cli.main import main
from routerforge.data.records import EvalRecord

TOPICS = ["algebra", "history", "poetry", "chemistry"]
MODELS = ["strong", "weak", "tiny"]
FAST = ["--param", "mlp.n_estimators=1", "--param", "mlp.max_epochs=30"]
PRICES = {"strong": 0.01, "weak": 0.001, "tiny": 0.0001}


def _records(n: int = 160, seed: int = 0, models: list[str] = MODELS, suffix: str = "") -> list[EvalRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        topic = TOPICS[i % 4]
        text = f"{topic} question {i}: explain {topic} item {i * 7 % 13}{suffix}"
        p = {"strong": 0.9, "weak": 0.15 if topic == "algebra" else 0.85, "tiny": 0.4}
        for m in models:
            out.append(
                EvalRecord(
                    prompt_key=f"q{i}",
                    prompt=text,
                    model=m,
                    score=float(rng.random() < p[m]),
                    cost_usd=PRICES[m] * (1 + 0.1 * rng.random()),
                    split="test" if i % 5 == 1 else "train",
                    category=topic,
                )
            )
    return out


@pytest.fixture
def home(rf_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from routerforge.config import load_settings
    from routerforge.data.store import Store

    monkeypatch.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
    store = Store.from_settings(load_settings())
    store.import_records("toy", _records())
    store.import_records("pair", [r for r in _records(seed=1) if r.model in ("strong", "weak")])
    store.import_records("solo", [r for r in _records(seed=2) if r.model == "strong"])
    store.import_records("other", _records(60, seed=3, suffix=" (other source)"))
    store.close()
    return rf_home


def test_bench_binary_json_and_report(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, report = tmp_path / "b.json", tmp_path / "rep"
    code = main(
        [
            "bench",
            "--data",
            "toy",
            "--router",
            "mlp",
            *FAST,
            "--strong",
            "strong",
            "--weak",
            "weak",
            "--folds",
            "4",
            "--json",
            str(out),
            "--report",
            str(report),
            "--latency-sample",
            "5",
        ]
    )
    assert code == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert doc["folds"] == 4 and doc["n_prompts"] == 160 and doc["strong"] == "strong"
    assert set(doc["routers"]) == {"mlp", "random", "oracle"}
    mlp = doc["routers"]["mlp"]
    assert {
        "apgr",
        "apgr_101",
        "cpt50",
        "cpt80",
        "curve",
        "fit_s",
        "predict_ms_p50",
        "predict_ms_p99",
    } <= set(mlp)
    assert mlp["predict_ms_p50"] > 0 and mlp["apgr"] > 0.55  # the topic signal is learnable
    assert (report / "index.html").is_file() and (report / "quality_vs_strong_share.png").is_file()
    assert "APGR" in capsys.readouterr().err  # the rich table


def test_bench_nmodel_own_split(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "n.json"
    assert (
        main(
            [
                "bench",
                "--data",
                "toy",
                "-r",
                "mlp",
                *FAST,
                "--split",
                "test",
                "--json",
                str(out),
                "--latency-sample",
                "3",
            ]
        )
        == 0
    )
    doc = json.loads(out.read_text())
    assert doc["mode"] == "nmodel" and doc["n_prompts"] == 32 and doc["best_single"] == "strong"
    assert {"aiq", "quality_at_best_cost", "cost_share_at_best_quality", "pareto"} <= set(
        doc["routers"]["mlp"]
    )


def test_bench_categories_and_dropped_prompts(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drop = tmp_path / "drop.jsonl"
    drop.write_text(
        json.dumps({"eval_prompt": "algebra question 0: explain algebra item 0\n"})
        + "\n"
        + json.dumps({"eval_prompt": "never seen"})
        + "\n"
    )
    out = tmp_path / "c.json"
    assert (
        main(
            [
                "bench",
                "--data",
                "pair",
                "-r",
                "mlp",
                *FAST,
                "--group-by",
                "category",
                "--folds",
                "4",
                "--drop-prompts",
                str(drop),
                "--json",
                str(out),
                "--latency-sample",
                "3",
            ]
        )
        == 0
    )
    doc = json.loads(out.read_text())
    assert doc["dropped_prompts"] == {"file": str(drop), "listed": 2, "matched": 1, "rows_removed": 1}
    assert doc["n_prompts"] == 159 and "categories" in doc["split"]
    assert "1 of 2 listed prompts matched" in capsys.readouterr().err


def test_bench_transfer(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    assert (
        main(
            [
                "bench",
                "--data",
                "toy",
                "-r",
                "mlp",
                *FAST,
                "--test",
                "other",
                "--strong",
                "strong",
                "--weak",
                "weak",
                "--json",
                str(out),
                "--latency-sample",
                "3",
            ]
        )
        == 0
    )
    doc = json.loads(out.read_text())
    assert doc["test_data"] == "other" and doc["n_prompts"] == 60 and doc["n_train_mean"] == 160
    assert (
        main(["bench", "--data", "toy", "-r", "mlp", *FAST, "--test", "pair"]) != 0
    )  # every text seen in training


def test_bench_baselines_interval_and_drops(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "220")  # the rich table at full width
    out, report = tmp_path / "b.json", tmp_path / "rep"
    args = ["bench", "--data", "toy", "-r", "mlp", *FAST, "--split", "test", "--latency-sample", "2"]
    code = main(
        [
            *args,
            "--strong",
            "strong",
            "--weak",
            "weak",
            "--bootstrap",
            "300",
            "--json",
            str(out),
            "--report",
            str(report),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert set(doc["baselines"]) == {"best_single", "length", "category"}
    vs = doc["routers"]["mlp"]["vs_baseline"]
    assert vs["baseline"] in doc["baselines"] and len(vs["ci95"]) == 2 and isinstance(vs["significant"], bool)
    assert doc["bootstrap"]["resamples"] == 300 and doc["bootstrap"]["metric"] == "apgr"
    assert doc["dropped"]["test_text_in_train"] == 0 and "heldout_missing_score" in doc["dropped"]
    assert "vs best baseline" in err and "category (baseline)" in err and "paired-bootstrap" in err
    html = (report / "index.html").read_text()
    assert "length (baseline)" in html and "strongest baseline" in html
    # N models: quality at the best single model's cost; --bootstrap 0 reports the difference only
    code = main([*args, "--bootstrap", "0", "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert doc["bootstrap"]["metric"] == "quality_at_best_cost"
    assert doc["routers"]["mlp"]["vs_baseline"]["ci95"] is None
    assert "heldout_missing_cost" in doc["dropped"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "toy", "-r", "knnn"], "No router named 'knnn'"),
        (["--data", "nope", "-r", "mlp", *FAST], "No dataset named 'nope'"),
        (
            ["--data", "toy", "-r", "mlp", *FAST, "--strong", "gpt-9", "--weak", "weak"],
            "No model named 'gpt-9'",
        ),
        (["--data", "solo", "-r", "mlp", *FAST], "only 1 model"),
        (["--data", "toy", "-r", "mlp", *FAST, "--folds", "3", "--split", "test"], "only one of"),
        (["--data", "toy", "-r", "mlp", *FAST, "--param", "mlp.nonsense=1"], "no parameter"),
    ],
)
def test_bench_bad_input(
    home: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code = main(["bench", *args])
    assert code != 0
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------------------ train / route / share
def test_train_route_calibrate_export_import(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("routerforge.policy.trained")
    rdir = tmp_path / "r"
    assert (
        main(["train", "mlp", "--data", "toy", "--out", str(rdir), "--json", "-p", "n_estimators=1"]) == 0
    ), capsys.readouterr().err
    info = json.loads(capsys.readouterr().out)
    assert info["split"] == "train" and info["n_train"] == 128
    assert (rdir / "training_prompts.npy").is_file() and (rdir / "routing.json").is_file()
    assert (rdir / "cost_model_weights.npy").is_file()  # per-prompt price estimates from recorded costs

    prompt = "algebra question 999: explain algebra item 3"
    assert main(["route", str(rdir), prompt, "--json", "--model", "strong", "--model", "weak"]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["policy"] == "threshold" and decision["model"] in ("strong", "weak")
    assert set(decision["predicted"]) == {"strong", "weak"} and decision["knob"] == 0.5
    assert decision["details"]["strong"] == "strong"  # the higher mean training score
    assert decision["details"]["knob_source"] == "default"
    assert decision["details"]["explanation"]["router"] == "mlp"
    assert main(["route", str(rdir), prompt, "--json", "--lambda", "1e9"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "tiny"  # cost dominates
    assert main(["route", str(rdir), prompt, "--tolerance", "1"]) == 0
    assert "tiny" in capsys.readouterr().err

    # calibration on held-out prompts (the 32 test-split prompts), saved for the gateway
    assert (
        main(
            [
                "calibrate",
                str(rdir),
                "--data",
                "toy",
                "--target",
                "strong-share=0.25",
                "--strong",
                "strong",
                "--weak",
                "weak",
                "--json",
            ]
        )
        == 0
    )
    cal = json.loads(capsys.readouterr().out)
    assert cal["n_heldout"] == 32 and cal["policy"] == "threshold"
    assert cal["expected"]["strong_share"] == pytest.approx(0.25, abs=0.05)
    saved = json.loads((rdir / "calibration.json").read_text())
    assert saved["knob"] == cal["knob"] and saved["strong"] == "strong"
    # the calibrated threshold applies to its pair; a 3-model router without a knob is routed by λ
    assert main(["route", str(rdir), prompt, "--json", "-m", "strong", "-m", "weak"]) == 0
    routed = json.loads(capsys.readouterr().out)
    assert routed["knob"] == cal["knob"]["threshold"] and routed["details"]["knob_source"] == "calibration"
    assert main(["calibrate", str(rdir), "--data", "toy", "--target", "cost-per-1k=3", "--json"]) == 0
    wtp = json.loads(capsys.readouterr().out)
    assert wtp["policy"] == "wtp" and wtp["expected"]["cost_per_1k"] <= 3.0

    archive = tmp_path / "r.tar.gz"
    assert main(["router", "export", str(rdir), str(archive)]) == 0
    copy = tmp_path / "copy"
    assert main(["router", "import", str(archive), str(copy)]) == 0
    assert main(["route", str(copy), prompt, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] in MODELS
    assert main(["router", "import", str(archive), str(copy)]) != 0  # refuses a non-empty target
    assert "not empty" in capsys.readouterr().err


def test_train_errors(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "knnn", "--data", "toy", "--out", str(tmp_path / "x")]) != 0
    assert "No router named 'knnn'" in capsys.readouterr().err
    assert main(["train", "mlp", "--data", "toy", "--out", str(tmp_path / "x"), "--split", "dev"]) != 0
    assert "no prompts in split 'dev'" in capsys.readouterr().err


def _tar_with(tmp_path: Path, name: str, data: bytes = b"{}") -> Path:
    path = tmp_path / f"evil-{len(name)}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("name", ["../escape.json", "/abs/router.json", "a/../../b.json"])
def test_import_refuses_path_traversal(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    target = tmp_path / "dest"
    assert main(["router", "import", str(_tar_with(tmp_path, name)), str(target)]) == 2
    assert "unsafe entry" in capsys.readouterr().err
    assert not target.exists() and not (tmp_path / "escape.json").exists()
    assert not any(p.name.startswith(".import-") for p in tmp_path.iterdir())  # staging cleaned up


def test_import_validates_the_router(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = _tar_with(
        tmp_path, "router.json", b'{"format_version": 999, "type": "knn", "params": {}, "models": []}'
    )
    assert main(["router", "import", str(archive), str(tmp_path / "d")]) == 2
    assert "format version" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    not_router = tmp_path / "empty"
    not_router.mkdir()
    assert main(["router", "export", str(not_router), str(tmp_path / "x.tar.gz")]) == 2
    assert "router.json is missing" in capsys.readouterr().err


def test_registered_prices_route_bench_and_calibrate_data_without_costs(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`routerforge models add` prices stand in for recorded costs in train, route, bench and calibrate."""
    from routerforge.config import load_settings
    from routerforge.data.store import Store

    store = Store.from_settings(load_settings())
    records = _records(seed=4)
    for r in records:
        r.cost_usd = None
    store.import_records("nocost", records)
    store.close()
    rdir = tmp_path / "r"
    assert (
        main(["train", "mlp", "--data", "nocost", "--out", str(rdir), "-p", "n_estimators=1", "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["priced"] is False
    assert main(["route", str(rdir), "algebra question 1", "--lambda", "1", "--json"]) != 0
    assert "needs a price" in capsys.readouterr().err
    for model, price in (("strong", 10.0), ("weak", 1.0), ("tiny", 0.1)):
        assert (
            main(
                [
                    "models",
                    "add",
                    model,
                    "--input-price",
                    str(price),
                    "--output-price",
                    str(price),
                    "--no-lookup",
                ]
            )
            == 0
        )
    capsys.readouterr()
    assert (
        main(["train", "mlp", "--data", "nocost", "--out", str(rdir), "-p", "n_estimators=1", "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["priced"] is True
    assert main(["route", str(rdir), "algebra question 1", "--lambda", "1e9", "--json"]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["model"] == "tiny" and decision["prices_usd"]["strong"] > decision["prices_usd"]["tiny"]
    out = tmp_path / "n.json"
    assert (
        main(
            [
                "bench",
                "--data",
                "nocost",
                "-r",
                "mlp",
                *FAST,
                "--folds",
                "3",
                "--json",
                str(out),
                "--latency-sample",
                "2",
            ]
        )
        == 0
    )
    doc = json.loads(out.read_text())
    assert (
        doc["mode"] == "nmodel"
        and doc["single_models"]["strong"]["cost"] > doc["single_models"]["tiny"]["cost"]
    )
    assert main(["calibrate", str(rdir), "--data", "nocost", "--target", "cost-per-1k=1", "--json"]) == 0
    cal = json.loads(capsys.readouterr().out)
    assert cal["policy"] == "wtp" and cal["expected"]["cost_per_1k"] <= 1.0


def test_train_writes_a_gateway_config_that_serves_the_router(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from routerforge.config import load_settings
    from routerforge.gateway.config import load_gateway_config
    from routerforge.gateway.routing import Routing

    rdir, conf = tmp_path / "mine", tmp_path / "gateway.yaml"
    args = [
        "train",
        "mlp",
        "--data",
        "pair",
        "--out",
        str(rdir),
        "-p",
        "n_estimators=1",
        "--gateway-yaml",
        str(conf),
    ]
    assert main(args) == 0
    assert "router-mine" in capsys.readouterr().err
    assert (conf.stat().st_mode & 0o777) == 0o600
    doc = yaml.safe_load(conf.read_text())
    assert {m["id"] for m in doc["models"]} == {"strong", "weak"}
    routing = Routing(load_settings(), load_gateway_config(conf))
    target = routing.resolve("default", "router-mine")
    assert target.synthetic and target.kind is None  # the calibrated (else default) policy
    decision = routing.decide(target, "algebra question 5: explain algebra item 3")
    assert decision.model in ("strong", "weak") and decision.policy == "threshold"
    routing.close()
    assert main(args) == 2  # never overwrites a gateway config
    assert "exists already" in capsys.readouterr().err

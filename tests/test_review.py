"""`routerforge review`, `promote` and `rollback`: replay logged traffic and eval sets through a candidate
router and the serving one (one decision path), record promotions with an audit trail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from sqlalchemy import select

from fake_upstream import FakeUpstream
from gateway_server import LoopbackServer
from review_setup import (
    ALGEBRA,
    HISTORY,
    STRONG,
    WEAK,
    cli_error,
    cli_json,
    gateway_raw,
    train_two,
    write_config,
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def routers(rf_home: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
    return train_two(rf_home)


def _expected(router: Path, text: str) -> str:
    from routerforge.config import load_settings
    from routerforge.policy.trained import TrainedRouter

    trained = TrainedRouter.load(router, load_settings())
    return trained.decide(text, kind="threshold", knob=0.6, candidates=[WEAK, STRONG]).model


def test_promote_validates_records_and_rolls_back(
    routers: tuple[Path, Path], rf_home: Path, tmp_path: Path, upstream: FakeUpstream, capsys: Any
) -> None:
    from routerforge.config import load_settings
    from routerforge.gateway.assignments import GwRouterAudit
    from routerforge.gateway.db import GatewayDB

    v1, _v2 = routers
    cfg = write_config(tmp_path / "gateway.yaml", gateway_raw(upstream.base_url))
    base = ["--config", str(cfg), "--json"]
    # refused, nothing recorded: unknown synthetic model, no router there, a router of other models
    assert "No synthetic model 'nope'" in cli_error(capsys, ["promote", "nope", "--router", "v2", *base])
    assert "No trained router" in cli_error(capsys, ["promote", "smart", "--router", str(tmp_path), *base])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "router.json").write_text("{not json", encoding="utf-8")
    assert "does not load" in cli_error(capsys, ["promote", "smart", "--router", str(broken), *base])
    narrow = write_config(
        tmp_path / "narrow.yaml",
        {
            **gateway_raw(upstream.base_url),
            "models": gateway_raw(upstream.base_url)["models"][:1],
            "synthetic_models": [{"name": "smart", "router": "v1"}],
        },
    )
    err = cli_error(capsys, ["promote", "smart", "--router", "v2", "--config", str(narrow)])
    assert "does not serve" in err and STRONG in err
    assert "no promotion to roll back" in cli_error(capsys, ["rollback", "smart", *base])
    assert "must be ≥ 0" in cli_error(capsys, ["promote", "smart", "--router", "v2", "--knob", "-1", *base])
    assert "--policy" in cli_error(capsys, ["promote", "smart", "--router", "v2", "--policy", "best", *base])

    first = cli_json(capsys, ["promote", "smart", "--router", "v2", *base])
    assert first["router"] == "v2" and first["knob"] is None and first["previous"]["router"] is None
    second = cli_json(capsys, ["promote", "smart", "--router", str(v1), "--knob", "0.3", *base])
    assert second["router"] == str(v1.resolve()) and second["kind"] == "threshold" and second["knob"] == 0.3
    assert second["state_version"] == first["state_version"] + 1
    back = cli_json(capsys, ["rollback", "smart", *base])
    assert back["router"] == "v2" and back["source"] == "promotion"
    back2 = cli_json(capsys, ["rollback", "smart", *base])
    assert back2["router"] == "v1" and back2["source"] == "config"
    assert "no promotion to roll back" in cli_error(capsys, ["rollback", "smart", *base])

    db = GatewayDB(load_settings().store_url)
    with db.engine.connect() as conn:
        audit = conn.execute(
            select(GwRouterAudit.action, GwRouterAudit.router).order_by(GwRouterAudit.id)
        ).all()
    db.close()
    assert [a for a, _ in audit] == ["promote", "promote", "rollback", "rollback"]
    assert audit[2][1] == "v2" and audit[3][1] == "v1"  # what each rollback restored


def test_review_replays_the_log_and_the_eval_set(
    routers: tuple[Path, Path], rf_home: Path, tmp_path: Path, upstream: FakeUpstream, capsys: Any
) -> None:
    from routerforge.config import load_settings
    from routerforge.data.store import Store
    from routerforge.gateway.app import create_app
    from routerforge.gateway.config import parse_gateway_config

    v1, v2 = routers
    raw = gateway_raw(upstream.base_url)
    raw["require_auth"] = False
    cfg = write_config(tmp_path / "gateway.yaml", raw)
    store = Store.from_settings(load_settings())
    matrix = store.load_matrix("d1")
    store.close()
    prompts = [matrix.prompts[i] for i in range(20)] + [
        ALGEBRA,
        HISTORY,
        matrix.prompts[20],
        matrix.prompts[24],
    ]
    app = create_app(load_settings(), parse_gateway_config(raw))
    with LoopbackServer(app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        for text in prompts:
            client.chat.completions.create(model="smart", messages=[{"role": "user", "content": text}])
        client.chat.completions.create(model=WEAK, messages=[{"role": "user", "content": "not routed"}])

    expected_s = [_expected(v1, t) for t in prompts]
    expected_c = [_expected(v2, t) for t in prompts]
    n_dis = sum(a != b for a, b in zip(expected_s, expected_c, strict=True))
    assert 0 < n_dis < len(prompts)  # a replay where everything (or nothing) differs would prove little

    report = cli_json(
        capsys,
        [
            "review",
            "--candidate",
            "v2",
            "--serving",
            "smart",
            "--knob",
            "0.6",
            "--last",
            "100",
            "--dataset",
            "d1",
            "--config",
            str(cfg),
            "--json",
        ],
    )
    assert report["n"] == len(prompts)  # the real-model request is not the synthetic model's
    assert report["disagreements"]["count"] == n_dis
    listed = {d["prompt"]: d for d in report["disagreements"]["items"]}
    d = listed[ALGEBRA]
    assert (d["serving"]["model"], d["candidate"]["model"]) == (STRONG, WEAK)
    assert d["serving"]["answer"] == f"{STRONG} says: {ALGEBRA}" and d["serving"]["answer_source"] == "log"
    assert d["serving"]["predicted_score"] == pytest.approx(d["serving"]["predicted"][STRONG])
    assert report["choices"]["serving"] == {m: expected_s.count(m) for m in set(expected_s)}
    cost = report["cost_change"]
    from routerforge.policy.trained import TrainedRouter

    serving_router = TrainedRouter.load(v1, load_settings())  # one yardstick: the serving router's prices
    _, prices = serving_router.score(prompts)
    col = serving_router.models.index
    exp_s = np.mean([prices[i, col(m)] for i, m in enumerate(expected_s)])
    exp_c = np.mean([prices[i, col(m)] for i, m in enumerate(expected_c)])
    assert cost["serving_usd_per_request"] == pytest.approx(exp_s)
    assert cost["candidate_usd_per_request"] == pytest.approx(exp_c)
    assert exp_c < exp_s  # more algebra (v2: weak) than history (v2: strong) among the prompts
    assert cost["relative"] == pytest.approx(
        cost["absolute_usd_per_request"] / cost["serving_usd_per_request"]
    )
    q = report["quality_change"]  # the d1 prompts have true scores
    rows = {t: i for i, t in enumerate(matrix.prompts)}
    cols = {m: j for j, m in enumerate(matrix.models)}
    scored = [i for i, t in enumerate(prompts) if t in rows]
    s_true = [matrix.scores[rows[prompts[i]], cols[expected_s[i]]] for i in scored]
    c_true = [matrix.scores[rows[prompts[i]], cols[expected_c[i]]] for i in scored]
    assert q["n_scored"] == len(scored) >= 22
    assert q["absolute"] == pytest.approx(np.mean(c_true) - np.mean(s_true))

    evald = cli_json(
        capsys,
        [
            "review",
            "--candidate",
            str(v2),
            "--dataset",
            "d1",
            "--eval-split",
            "test",
            "--config",
            str(cfg),
            "--json",
        ],
    )
    n_test = sum(1 for s in matrix.splits if s == "test")
    assert evald["n"] == n_test and evald["quality_change"]["n_scored"] == n_test
    assert evald["serving"]["model"] == "smart"  # the default: the only synthetic model
    for item in evald["disagreements"]["items"]:  # both answers from the eval store
        assert item["serving"]["answer_source"] == item["candidate"]["answer_source"] == "dataset"
        assert item["candidate"]["answer"].startswith(item["candidate"]["model"] + " answers")

    # the serving router named router-<dir>; answers asked from the upstream on request (log replay)
    by_name = cli_json(
        capsys,
        [
            "review",
            "--candidate",
            "v2",
            "--serving",
            "router-v1",
            "--dataset",
            "d1",
            "--config",
            str(cfg),
            "--json",
        ],
    )
    assert by_name["serving"]["model"] == "router-v1" and by_name["n"] == matrix.n_prompts
    asked = cli_json(
        capsys,
        [
            "review",
            "--candidate",
            "v2",
            "--knob",
            "0.6",
            "--last",
            "100",
            "--answers",
            "--config",
            str(cfg),
            "--json",
        ],
    )
    assert asked["disagreements"]["count"] == n_dis
    for item in asked["disagreements"]["items"]:
        for side in ("serving", "candidate"):
            x = item[side]
            assert x["answer"] == f"{x['model']} says: {item['prompt']}"
            assert x["answer_source"] in ("log", "upstream")
        assert item["candidate"]["answer_source"] == "upstream"


def test_review_counts_skips_and_refuses_bad_input(
    routers: tuple[Path, Path], rf_home: Path, tmp_path: Path, upstream: FakeUpstream, capsys: Any
) -> None:
    from routerforge.config import load_settings
    from routerforge.gateway.app import create_app
    from routerforge.gateway.config import parse_gateway_config

    raw = gateway_raw(upstream.base_url)
    raw["require_auth"] = False
    raw["logging"] = {"store_messages": False}
    cfg = write_config(tmp_path / "gateway.yaml", raw)
    app = create_app(load_settings(), parse_gateway_config(raw))
    with LoopbackServer(app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        for _ in range(3):
            client.chat.completions.create(model="smart", messages=[{"role": "user", "content": ALGEBRA}])
    report = cli_json(capsys, ["review", "--candidate", "v2", "--last", "10", "--config", str(cfg), "--json"])
    assert report["n"] == 0 and report["disagreements"]["count"] == 0
    assert report["skipped"]["count"] == 3
    assert list(report["skipped"]["reasons"]) == ["prompt not in the log (logging.store_messages is off)"]
    assert "--last N" in cli_error(capsys, ["review", "--candidate", "v2", "--config", str(cfg)])
    assert "between 1" in cli_error(
        capsys, ["review", "--candidate", "v2", "--last", "0", "--config", str(cfg)]
    )
    assert "No trained router" in cli_error(
        capsys, ["review", "--candidate", "nope", "--last", "5", "--config", str(cfg)]
    )
    assert "real model" in cli_error(
        capsys, ["review", "--candidate", "v2", "--serving", WEAK, "--last", "5", "--config", str(cfg)]
    )
    assert "--eval-split needs --dataset" in cli_error(
        capsys, ["review", "--candidate", "v2", "--eval-split", "test", "--config", str(cfg)]
    )
    from routerforge.cli.main import main  # the rich table (no --json)

    capsys.readouterr()
    assert main(["review", "--candidate", "v2", "--dataset", "d1", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "disagreements" in out and "prompts (eval)" in out


def test_assignments_on_postgresql_under_concurrent_promotions(pg_url: str) -> None:
    import threading

    from routerforge.errors import NotFoundError
    from routerforge.gateway.assignments import Assignments
    from routerforge.gateway.db import GatewayDB

    db = GatewayDB(pg_url)
    store = Assignments(db.engine)
    assert store.version() == 0
    versions: list[int] = []
    lock = threading.Lock()

    def promote(i: int) -> None:
        _, v = store.promote("smart", f"r{i}", kind=None, knob=None, actor=f"t{i}", config_router="base")
        with lock:
            versions.append(v)

    threads = [threading.Thread(target=promote, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == list(range(1, 9))  # every change its own version: none lost
    current = store.get("smart")
    assert current is not None and len(current.previous) == 8  # each promotion stacked the one before
    assert current.previous[0] == {"router": None, "config_router": "base"}
    for _ in range(8):
        store.rollback("smart", actor="ops")
    assert store.get("smart") is None  # back to gateway.yaml's router
    with pytest.raises(NotFoundError):
        store.rollback("smart", actor="ops")
    assert len(store.audit()) == 16 and store.version() == 16
    assert store.bump() == 17
    db.close()

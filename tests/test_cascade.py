"""Cascades: the replay definition, live verifiers, and `bench --policy cascade`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from routerforge.errors import ValidationError
from routerforge.policy.cascade import cascade_order, live_verdict, replay_cascade


def test_replay_pays_every_step_and_stops_at_the_first_confident_answer() -> None:
    # columns: cheap, mid, big
    conf = np.array([[0.9, 0.0, 0.0], [0.1, 0.8, 0.0], [0.1, 0.2, 0.0], [np.nan, 0.9, 1.0]])
    costs = np.array([[1.0, 10.0, 100.0]] * 4)
    order = cascade_order(costs)
    assert order == [0, 1, 2]
    r = replay_cascade(conf, costs, 0.5, order)
    assert r.chosen.tolist() == [0, 1, 2, 1]
    assert r.cost.tolist() == [1.0, 11.0, 111.0, 11.0]
    assert r.steps.tolist() == [1, 2, 3, 2]
    scores = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 1, 1]], dtype=float)
    s = r.summary(scores)
    assert s["quality"] == 1.0 and s["escalation_rate"] == 0.75 and s["calls_per_prompt"] == 2.0
    assert replay_cascade(conf, costs, 0.0, order).steps.tolist() == [1, 1, 1, 2]  # NaN never passes
    assert replay_cascade(conf, costs, 2.0, order).chosen.tolist() == [2, 2, 2, 2]  # the last always answers
    with pytest.raises(ValidationError):
        replay_cascade(conf, costs[:, :2], 0.5, order)


def test_live_verifiers() -> None:
    assert live_verdict("numeric", "The answer is 42.") == 1.0 and live_verdict("numeric", "forty") == 0.0
    assert live_verdict("json", '{"a": 1}') == 1.0 and live_verdict("json", "{a: 1}") == 0.0
    assert live_verdict("nonempty", "Paris") == 1.0
    assert live_verdict("nonempty", "I don't know.") == 0.0 and live_verdict("nonempty", "  ") == 0.0
    with pytest.raises(ValidationError, match="Unknown live verifier"):
        live_verdict("oracle", "x")


def test_bench_cascade_adds_escalation_rate(
    rf_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from routerforge.cli.main import main
    from routerforge.config import load_settings
    from routerforge.data.store import Store
    from test_cli_routing import FAST, _records

    monkeypatch.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
    store = Store.from_settings(load_settings())
    store.import_records("toy", _records())
    store.close()
    out = tmp_path / "c.json"
    args = ["bench", "--data", "toy", "-r", "mlp", *FAST, "--folds", "3", "--latency-sample", "2"]
    assert main([*args, "--policy", "cascade", "--cascade-threshold", "0.6", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    cascade = doc["cascade"]
    assert cascade["threshold"] == 0.6 and cascade["order"][0] == "tiny"  # cheapest first
    mlp = doc["routers"]["mlp"]
    assert 0.0 <= mlp["escalation_rate"] <= 1.0 and mlp["cascade"]["calls_per_prompt"] >= 1.0
    assert (
        cascade["judge"]["quality"] >= mlp["cascade"]["quality"] - 1e-9
        or cascade["judge"]["cost"] is not None
    )
    assert main([*args, "--policy", "lottery"]) != 0
    assert "--policy 'lottery'" in capsys.readouterr().err


def test_live_cascade_in_the_gateway(rf_home: Path) -> None:
    import httpx

    from fake_upstream import FakeUpstream, default_answer
    from gateway_server import LoopbackServer
    from test_gateway_routing import raw_config, router_dir, settings_for, stub_app

    def answer(model: str, messages: list[dict[str, object]]) -> str:
        text = default_answer(model, messages)
        if model == "small":
            return "4" if "easy" in text else "no idea"
        return "42"

    with FakeUpstream(answer=answer) as up:
        settings = settings_for(rf_home)
        named = router_dir(rf_home / "elsewhere" / "casc")
        syn = {"name": "casc", "router": str(named), "cascade": {"verifier": "numeric", "threshold": 0.5}}
        app = stub_app(settings, raw_config(up, synthetic_models=[syn]), [named])
        with LoopbackServer(app) as server:
            key, _ = app.state.keys.create("globex")
            auth = {"authorization": f"Bearer {key}"}

            def chat(content: str) -> httpx.Response:
                body = {"model": "casc", "messages": [{"role": "user", "content": content}]}
                return httpx.post(server.url + "/v1/chat/completions", headers=auth, json=body)

            easy = chat("an easy hard sum")
            assert easy.status_code == 200 and easy.headers["x-routerforge-model"] == "small"
            hard = chat("a hard proof")
            assert hard.status_code == 200 and hard.headers["x-routerforge-model"] == "large"
            assert hard.json()["choices"][0]["message"]["content"] == "42"
            assert up.count("small") == 2 and up.count("large") == 1  # every step is a real, paid call
            entry = httpx.get(
                server.url + f"/v1/logs/{hard.headers['x-routerforge-request-id']}", headers=auth
            ).json()
    steps = entry["decision"]["cascade_steps"]
    assert [s["model"] for s in steps] == ["small", "large"] and steps[0]["score"] == 0.0
    assert entry["policy"] == "cascade" and entry["answered_model"] == "large"
    assert entry["cost_usd"] == pytest.approx(sum(s["cost_usd"] for s in steps))

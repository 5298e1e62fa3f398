"""The improvement loop end to end, offline, each step one command (README, "The improvement loop"):

eval run → train v1 → serve (real gateway on loopback, fake upstream) → traffic → ``data prompts from-logs``
(no feedback needed; opted-out tenants and repeats skipped and counted) → ``eval run`` over the candidate
models (rule judges, references copied from the task suite) → ``train`` v2 on the grown eval set →
``review`` → ``promote`` → ``drift`` looks at the promoted router.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from fake_upstream import FakeUpstream
from gateway_server import LoopbackServer
from routerforge.cli.main import main
from routerforge.config import load_settings
from routerforge.evalrun.prompts import read_prompt_file
from routerforge.gateway.app import create_app
from routerforge.gateway.config import load_gateway_config
from routerforge.tasks import generate_tasks

TASKS = {p.text: p for seed in (0, 1) for p in generate_tasks(120, seed=seed)}


def answer(model: str, messages: list[dict[str, Any]]) -> str:
    """``strong`` knows every task; ``weak`` only the easiest level and says so otherwise."""
    text = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    item = TASKS.get(text)
    if item is None:
        return "I don't know."
    if model == "strong" or item.metadata.get("difficulty") == 1:
        return str(item.reference)
    return "I don't know."


def run(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    """Run one CLI command with --json; returns its parsed output (fails the test on a non-zero exit)."""
    code = main([*args, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_the_loop_end_to_end(
    rf_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ROUTERFORGE_EMBED__PROVIDER", "hash")
    with FakeUpstream(answer=answer) as up:
        for model, price in (("strong", "3"), ("weak", "0.1")):
            run(capsys, "models", "add", model, "--base-url", up.base_url, "--input-price", price,
                "--output-price", price, "--no-lookup")  # fmt: skip
        # the first router, from an eval run over the built-in task suite
        run(capsys, "data", "prompts", "generate", "--name", "tasks", "--size", "90", "--seed", "0")
        first = run(capsys, "eval", "run", "--prompts", "tasks", "--models", "strong,weak", "--name", "evalset",
                    "--judge", "auto", "--no-progress")  # fmt: skip
        assert first["done"] == 180 and first["per_model"]["strong"]["mean_score"] == 1.0
        v1, v2 = rf_home / "routers" / "v1", rf_home / "routers" / "v2"
        assert main(["train", "knn", "--data", "evalset", "--out", str(v1)]) == 0
        capsys.readouterr()

        gw_path = rf_home / "gateway.yaml"
        gw_path.write_text(
            yaml.safe_dump(
                {
                    "models": [
                        {"id": m, "base_url": up.base_url, "input_usd_per_mtok": p, "output_usd_per_mtok": p}
                        for m, p in (("strong", 3.0), ("weak", 0.1))
                    ],
                    "synthetic_models": [{"name": "smart", "router": str(v1)}],
                    "tenants": [{"name": "acme"}, {"name": "secretco", "training_opt_out": True}],
                    "drift": {"enabled": False},
                    "reload": {"interval_s": 0.2},
                }
            )
        )
        # traffic: new prompts of the same suite (no feedback at all), some repeated, some opted out
        run(capsys, "data", "prompts", "generate", "--name", "traffic", "--size", "40", "--seed", "1")
        traffic = [p.text for p in generate_tasks(40, seed=1)]
        app = create_app(load_settings(), load_gateway_config(gw_path))
        with LoopbackServer(app) as server:
            acme, _ = app.state.keys.create("acme")
            secret, _ = app.state.keys.create("secretco")
            for key, prompts in ((acme, traffic + traffic[:5]), (secret, traffic[:5])):
                client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
                for text in prompts:
                    client.chat.completions.create(
                        model="smart", messages=[{"role": "user", "content": text}]
                    )

            # 1. logged prompts → a prompt set (with the suite's references, so rule judges can score)
            out_file = rf_home / "from-logs.jsonl"
            got = run(capsys, "data", "prompts", "from-logs", "--name", "from-logs", "--out", str(out_file),
                      "--references", "traffic", "--config", str(gw_path))  # fmt: skip
            assert got["requests_seen"] == 50
            assert got["prompts"] == 40 and got["new"] == 40 and got["with_reference"] == 40
            assert got["skipped"] == {"opt_out": 5, "failed": 0, "no_prompt": 0, "duplicate": 5}
            assert got["tenants"] == ["acme"]
            assert sum(got["splits"].values()) == 40 and 0 < got["splits"]["test"] < 20
            assert sorted(p.text for p in read_prompt_file(out_file)) == sorted(traffic)
            again = run(
                capsys, "data", "prompts", "from-logs", "--name", "from-logs", "--config", str(gw_path)
            )
            assert again["new"] == 0  # keyed by text hash: rerunning adds nothing twice

            # 2. eval run over the candidate models, into the same eval set
            second = run(capsys, "eval", "run", "--prompts", "from-logs", "--models", "strong,weak",
                         "--name", "evalset", "--judge", "auto", "--no-progress")  # fmt: skip
            assert second["done"] == 80 and second["failed"] == 0 and second["judge_failures"] == 0
            stats = run(capsys, "data", "stats", "evalset")
            assert stats["prompts"] >= 90 + 40 - 5  # a few texts may be in both suites

            # 3. retrain on the grown eval set
            assert main(["train", "knn", "--data", "evalset", "--out", str(v2)]) == 0
            capsys.readouterr()
            routing_v1 = json.loads((v1 / "routing.json").read_text())
            routing_v2 = json.loads((v2 / "routing.json").read_text())
            assert routing_v2["n_train"] >= routing_v1["n_train"] + got["splits"]["train"] - 5

            # 4. review the candidate on the logged traffic, 5. promote it (hot reload, no restart)
            review = run(capsys, "review", "--candidate", str(v2), "--serving", "smart", "--last", "40",
                         "--config", str(gw_path))  # fmt: skip
            assert review["n"] == 40 and {"disagreements", "cost_change", "quality_change"} <= set(review)
            promoted = run(capsys, "promote", "smart", "--router", str(v2), "--config", str(gw_path))
            assert str(v2) in json.dumps(promoted)
            deadline = time.monotonic() + 15  # the running gateway picks the promotion up, no restart
            while time.monotonic() < deadline:
                (syn,) = app.state.service.config.synthetic_models
                if Path(syn.router).resolve() == v2.resolve():
                    break
                time.sleep(0.1)
            assert Path(syn.router).resolve() == v2.resolve()

        # 6. drift now looks at the promoted router, over the traffic since the promotion only
        drift = run(capsys, "drift", "--config", str(gw_path))
        (smart,) = drift["data"]
        assert smart["router"] == str(v2.resolve())
        assert smart["window"]["since_promotion"] is True and smart["window"]["requests"] == 0
        assert smart["status"] == "insufficient data"


def test_local_models_take_the_prices_registered_for_them(rf_home: Path) -> None:
    """The loop's eval run must cost new answers like the old ones: a local model registered with prices
    (the quickstart's nominal ones) is priced with them; unregistered it stays free."""
    from routerforge.backends.llamacpp import installed_local_models
    from routerforge.data.records import CandidateModel
    from routerforge.data.store import Store
    from routerforge.evalrun.models import resolve_candidates

    if "smollm2-135m" not in {s.id for s in installed_local_models()}:
        pytest.skip("smollm2-135m weights or llama-cpp-python not installed")
    settings = load_settings()
    store = Store.from_settings(settings)
    try:
        (free,) = resolve_candidates(["smollm2-135m"], store=store, cache_dir=settings.cache_dir)
        store.upsert_model(CandidateModel(id="smollm2-135m", input_usd_per_mtok=1.0, output_usd_per_mtok=2.0))
        (priced,) = resolve_candidates(["smollm2-135m"], store=store, cache_dir=settings.cache_dir)
    finally:
        store.close()
    assert (free.input_usd_per_mtok, free.output_usd_per_mtok) == (0.0, 0.0)
    assert (priced.input_usd_per_mtok, priced.output_usd_per_mtok) == (1.0, 2.0)
    assert (priced.backend.input_usd_per_mtok, priced.backend.output_usd_per_mtok) == (1.0, 2.0)


def test_prompts_from_logs_counts_every_skip(rf_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import datetime as dt

    from routerforge.gateway.db import GatewayDB
    from routerforge.gateway.logentry import LogEntry
    from routerforge.gateway.requestlog import RequestLog

    settings = load_settings()
    db = GatewayDB(settings.store_url)
    try:
        db.ensure_tenant("quiet", training_opt_out=True)  # opted out in the database, not in gateway.yaml
        t0 = dt.datetime(2026, 1, 1)
        rows = [
            ("a", "acme", 200, "What is 2 + 2?"),
            ("b", "acme", 200, "What is 2 + 2?"),  # repeat
            ("c", "acme", 502, "What is 3 + 3?"),  # failed upstream
            ("d", "-", 401, None),  # refused before the caller was known
            ("e", "acme", 200, None),  # logged without its prompt (store_messages: false)
            ("f", "quiet", 200, "secret plans"),  # opted out
            ("g", "acme", 200, "Name a colour."),
        ]
        RequestLog(db).write(
            [
                LogEntry(
                    id=i,
                    tenant=t,
                    created_at=t0 + dt.timedelta(seconds=n),
                    requested_model="m",
                    status=s,
                    prompt=p,
                )
                for n, (i, t, s, p) in enumerate(rows)
            ]
        )
    finally:
        db.close()
    out = rf_home / "p.jsonl"
    got = run(capsys, "data", "prompts", "from-logs", "--out", str(out), "--test-fraction", "0")
    assert got["requests_seen"] == 7 and got["prompts"] == 2 and got["name"] is None
    assert got["skipped"] == {"opt_out": 1, "failed": 2, "no_prompt": 1, "duplicate": 1}
    assert got["splits"] == {"train": 2}
    items = list(read_prompt_file(out))
    assert [p.text for p in items] == ["What is 2 + 2?", "Name a colour."]
    assert items[0].metadata["first_request_id"] == "a" and items[0].metadata["occurrences"] == 2
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    # nothing usable, or nowhere to write: one clear error, nothing written
    assert main(["data", "prompts", "from-logs", "--name", "x", "--tenant", "quiet"]) != 0
    assert "No usable logged prompt among 1 requests (skipped: 1 opt_out)" in capsys.readouterr().err
    assert main(["data", "prompts", "from-logs"]) != 0
    assert "--name" in capsys.readouterr().err
    assert main(["data", "prompts", "from-logs", "--name", "x", "--references", "nosuch"]) != 0
    assert "No prompt set 'nosuch'" in capsys.readouterr().err
    assert main(["data", "prompts", "from-logs", "--name", "x", "--since", "yesterday"]) != 0
    assert "since" in capsys.readouterr().err

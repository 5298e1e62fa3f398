"""``routerforge keys|logs|data import-logs`` and the in-process SDK, on a real store and the fake upstream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from fake_upstream import FakeUpstream
from gateway_server import LoopbackServer
from routerforge.cli.main import main
from routerforge.config import load_settings
from routerforge.data.store import Store
from routerforge.gateway.app import create_app
from routerforge.gateway.config import parse_gateway_config
from routerforge.sdk import Client


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def write_config(path: Path, up: FakeUpstream) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {
                        "id": "small",
                        "base_url": up.base_url,
                        "input_usd_per_mtok": 1.0,
                        "output_usd_per_mtok": 2.0,
                    },
                    {
                        "id": "large",
                        "base_url": up.base_url,
                        "input_usd_per_mtok": 10.0,
                        "output_usd_per_mtok": 20.0,
                    },
                ],
                "tenants": [{"name": "acme"}, {"name": "globex", "training_opt_out": True}],
                "logging": {"flush_interval_s": 0.02},
            }
        )
    )
    return path


def test_keys_cli_create_list_revoke(rf_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--tenant", "acme", "--name", "ci", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["key"].startswith("rf-") and created["tenant"] == "acme"
    assert main(["keys", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [k["id"] for k in listed] == [created["id"]]
    assert created["key"] not in json.dumps(listed)  # secrets are never stored or shown again
    db_bytes = (rf_home / "routerforge.db").read_bytes()
    assert created["key"].encode() not in db_bytes
    assert main(["keys", "revoke", created["id"]]) == 0
    assert main(["keys", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["keys", "revoke", created["id"]]) != 0  # already revoked: one-line error
    assert "No active key" in capsys.readouterr().err


def test_logs_feedback_and_import_logs_honour_opt_out(
    rf_home: Path, upstream: FakeUpstream, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg_path = write_config(rf_home / "gateway.yaml", upstream)
    settings = load_settings()
    app = create_app(settings, parse_gateway_config(yaml.safe_load(cfg_path.read_text())))
    with LoopbackServer(app) as server:
        ka, _ = app.state.keys.create("acme")
        kg, _ = app.state.keys.create("globex")
        ids = {}
        for tenant, key in (("acme", ka), ("globex", kg)):
            client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
            for model in ("small", "large"):
                raw = client.chat.completions.with_raw_response.create(
                    model=model, messages=[{"role": "user", "content": "What is 2+2?"}]
                )
                ids[(tenant, model)] = raw.headers["x-routerforge-request-id"]
                r = httpx.post(
                    server.url + "/v1/feedback",
                    headers={"authorization": f"Bearer {key}"},
                    json={"request_id": ids[(tenant, model)], "rating": 1.0 if model == "large" else 0.0},
                )
                assert r.status_code == 200, r.text
            # one request without feedback
            client.chat.completions.create(model="small", messages=[{"role": "user", "content": "unrated"}])
    # the server stopped: its log was flushed on shutdown
    assert main(["logs", "--tenant", "acme", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and {r["tenant"] for r in rows} == {"acme"}
    assert main(["logs", "--since", "1h"]) == 0
    assert "Requests" in capsys.readouterr().out

    assert main(["data", "import-logs", "--name", "fromlogs", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["records"] == 2 and out["skipped_opt_out"] == 2 and out["tenants"] == ["acme"]
    store = Store(settings.store_url)
    matrix = store.load_matrix("fromlogs")
    store.close()
    assert matrix.prompts == ["What is 2+2?"]
    assert sorted(matrix.models) == ["large", "small"]
    row = dict(zip(matrix.models, matrix.scores[0], strict=True))
    assert row == {"large": 1.0, "small": 0.0}


def test_sdk_in_process_and_remote(rf_home: Path, upstream: FakeUpstream) -> None:
    cfg_path = write_config(rf_home / "gateway.yaml", upstream)
    with Client(config=cfg_path, tenant="acme") as client:
        resp = client.chat.completions.create(model="small", messages=[{"role": "user", "content": "hi sdk"}])
        assert resp.choices[0].message.content == "small says: hi sdk"
        assert resp.usage is not None and resp.usage.prompt_tokens > 0
        chunks = list(
            client.chat.completions.create(
                model="large", messages=[{"role": "user", "content": "a b c"}], stream=True
            )
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "large says: a b c"
        assert {m.id for m in client.models.list().data} >= {"small", "large"}
        fb = client.feedback(resp.id, 0.5)
        assert fb["status"] == "recorded"
    settings = load_settings()
    app = create_app(settings, parse_gateway_config(yaml.safe_load(cfg_path.read_text())))
    with LoopbackServer(app) as server:
        key, _ = app.state.keys.create("acme")
        remote = Client(base_url=server.base_url, api_key=key, max_retries=0)
        resp = remote.chat.completions.create(model="small", messages=[{"role": "user", "content": "remote"}])
        assert resp.choices[0].message.content == "small says: remote"
        remote.close()


def test_serve_validates_the_config_first(rf_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = rf_home / "bad.yaml"
    bad.write_text("models:\n  - id: a\n    input_usd_per_mtok: -1\n    fallbacks: [nope]\n")
    assert main(["serve", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Invalid" in err and "input_usd_per_mtok" in err
    missing = rf_home / "missing-router.yaml"
    missing.write_text(
        yaml.safe_dump(
            {
                "models": [{"id": "a", "base_url": "http://127.0.0.1:9/v1"}],
                "synthetic_models": [{"name": "s", "router": "no-such-router", "models": ["a"]}],
            }
        )
    )
    assert main(["serve", "--config", str(missing), "--port", "1"]) == 2
    assert "No trained router" in capsys.readouterr().err
    assert main(["serve", "--config", str(rf_home / "absent.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    binary = rf_home / "binary.yaml"
    binary.write_bytes(b"\x00\xbf\xff" * 1000)  # not UTF-8: a clear error, no traceback
    for cmd in (["serve", "--config", str(binary)], ["partition-logs", "--config", str(binary)]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert "is not UTF-8 text" in err and "Traceback" not in err
    assert main(["serve", "--config", str(rf_home)]) == 2  # a directory
    assert "Cannot read the gateway config" in capsys.readouterr().err

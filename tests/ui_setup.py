"""A real store for the dashboard tests and screenshots (not a test module).

``build(home, upstream)`` imports an eval dataset (two models' answers per prompt, an XSS prompt among
them), trains two real routers (hash embedder) and benchmarks one (``bench.json``), creates an admin and
a non-admin key, then sends real requests through a real gateway on loopback (a synthetic model routed by
the router, a direct model, a fallback after an upstream 500, a refused request) and rates some of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from routerforge.data.records import EvalRecord

WEAK, STRONG = "weak", "strong"
TOPICS = ["algebra", "history", "poetry", "chemistry"]
XSS = '<script>window.__xss = 1; document.title = "pwned"</script><img src=x onerror="window.__xss=2">'
XSS_PROMPT = f"Explain this snippet {XSS} please"


def eval_records(n: int = 96) -> list[EvalRecord]:
    out = []
    for i in range(n):
        topic = TOPICS[i % 4]
        text = f"{topic} question {i}: explain {topic} item {i * 7 % 13}"
        if i == 1:
            text = XSS_PROMPT  # hostile text in the eval data too
        hard = topic in ("algebra", "chemistry")
        for m in (WEAK, STRONG):
            score = 1.0 if m == STRONG or not hard else 0.0
            out.append(
                EvalRecord(
                    prompt_key=f"q{i}",
                    prompt=text,
                    model=m,
                    score=score,
                    cost_usd={STRONG: 0.01, WEAK: 0.001}[m],
                    latency_ms={STRONG: 900.0, WEAK: 150.0}[m],
                    response=f"{m} eval answer {i}" + (f" {XSS}" if i == 1 else ""),
                    split="test" if i % 5 == 0 else "train",
                    category=topic,
                )
            )
    return out


def gateway_config(base_url: str) -> dict[str, Any]:
    return {
        "models": [
            {"id": WEAK, "base_url": base_url, "input_usd_per_mtok": 1.0, "output_usd_per_mtok": 2.0},
            {
                "id": STRONG,
                "base_url": base_url,
                "input_usd_per_mtok": 10.0,
                "output_usd_per_mtok": 30.0,
                "fallbacks": [WEAK],
            },
        ],
        "synthetic_models": [
            {
                "name": "smart",
                "router": "uiknn",
                "models": [WEAK, STRONG],
                "policy": {"kind": "threshold", "knob": 0.5},
            }
        ],
        "tenants": [
            {"name": "acme", "daily_usd": 0.5, "monthly_usd": 2.0},
            {"name": "globex", "daily_usd": 10.0},
        ],
        "reliability": {"retry_base_s": 0.001, "retry_cap_s": 0.002},
    }


@dataclass
class UIStore:
    home: Path
    config_path: Path
    admin_key: str
    user_key: str
    request_ids: dict[str, str] = field(default_factory=dict)  # label -> request id


def train(home: Path) -> None:
    """Import the eval data and train ``uiknn`` (calibrated, benchmarked) and ``uiknn5`` with the CLI."""
    from routerforge.cli.main import main
    from routerforge.config import load_settings
    from routerforge.data.store import Store

    settings = load_settings()
    store = Store.from_settings(settings)
    store.import_records("ui-eval", eval_records())
    store.close()
    for name, k in (("uiknn", 7), ("uiknn5", 5)):
        out = settings.routers_dir / name
        assert main(["train", "knn", "--data", "ui-eval", "--out", str(out), "-p", f"k={k}", "--json"]) == 0
    code = main(
        [
            "calibrate",
            str(settings.routers_dir / "uiknn"),
            "--data",
            "ui-eval",
            "--target",
            "strong-share=0.5",
            "--json",
        ]
    )
    assert code == 0 and (settings.routers_dir / "uiknn" / "calibration.json").is_file()
    bench = settings.routers_dir / "uiknn" / "bench.json"
    code = main(
        [
            "bench",
            "--data",
            "ui-eval",
            "-r",
            "knn",
            "--folds",
            "2",
            "--strong",
            STRONG,
            "--weak",
            WEAK,
            "--bootstrap",
            "0",
            "--latency-sample",
            "4",
            "--json",
            str(bench),
        ]
    )
    assert code == 0 and bench.is_file()


def build(home: Path, upstream: Any) -> UIStore:
    """Train, create keys, and fill the request log through a real gateway on loopback."""
    from fake_upstream import Fault
    from gateway_server import LoopbackServer
    from routerforge.config import load_settings
    from routerforge.gateway.app import create_app
    from routerforge.gateway.auth import KeyStore, load_pepper
    from routerforge.gateway.config import load_gateway_config
    from routerforge.gateway.db import GatewayDB

    train(home)
    cfg = home / "gateway.yaml"
    cfg.write_text(yaml.safe_dump(gateway_config(upstream.base_url)), encoding="utf-8")
    settings = load_settings()
    gw = load_gateway_config(cfg)
    db = GatewayDB(settings.store_url)
    keys = KeyStore(db, load_pepper(settings.home, gw.key_pepper_env))
    admin, _ = keys.create("ops", name="ops-admin", admin=True)
    user, _ = keys.create("acme", name="acme-app")
    other, _ = keys.create("globex", name="globex-app")
    db.close()
    ids: dict[str, str] = {}
    app = create_app(settings, gw)
    with LoopbackServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:

        def chat(label: str, key: str, model: str, text: str) -> str:
            r = client.post(
                "/v1/chat/completions",
                headers={"authorization": f"Bearer {key}"},
                json={"model": model, "messages": [{"role": "user", "content": text}]},
            )
            rid = r.headers["x-routerforge-request-id"]
            ids[label] = rid
            return rid

        for i in range(8):
            topic = TOPICS[i % 4]
            chat(
                f"smart{i}",
                user if i % 2 == 0 else other,
                "smart",
                f"{topic} question {i}: explain {topic} item {i * 7 % 13}",
            )
        chat("xss", user, "smart", XSS_PROMPT)
        chat("direct", other, WEAK, "a direct question to the weak model")
        upstream.inject(Fault("status", status=500, model=STRONG, times=10))
        chat("fallback", user, STRONG, "chemistry question 99: this one falls back")
        upstream.clear_faults()
        r = client.post(
            "/v1/chat/completions",
            headers={"authorization": "Bearer rf-not-a-key"},
            json={"model": "smart", "messages": [{"role": "user", "content": "refused"}]},
        )
        ids["refused"] = r.headers["x-routerforge-request-id"]
        for label, rating in (("smart0", 1.0), ("smart2", 0.0), ("xss", 0.5)):
            fb = client.post(
                "/v1/feedback",
                headers={"authorization": f"Bearer {user}"},
                json={"request_id": ids[label], "rating": rating, "comment": f"rated {label} <b>bold</b>"},
            )
            assert fb.status_code == 200, fb.text
    (home / "ui_store.json").write_text(json.dumps({"ids": ids}), encoding="utf-8")
    return UIStore(home=home, config_path=cfg, admin_key=admin, user_key=user, request_ids=ids)

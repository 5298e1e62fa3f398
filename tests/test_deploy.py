"""The deployment files (deploy/): what can be checked without a container runtime or ``helm`` on this machine.

The Dockerfile is parsed (multi-stage, non-root, health check on a real endpoint, no secret baked in); the compose
file and the Helm chart (rendered by tests/helm_render.py with its default values and with the optional parts
switched on) are checked against the real settings names, gateway.yaml schema and the gateway's routes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from helm_render import Renderer
from routerforge.config import Settings
from routerforge.gateway.app import create_app
from routerforge.gateway.config import GatewayConfig, parse_gateway_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "routerforge"
SECRETISH = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|PEPPER)", re.I)


def routes() -> set[str]:
    app = create_app(Settings(home=Path("/nonexistent-rf-home")), GatewayConfig(), store=False)
    return {getattr(r, "path", "") for r in app.routes}


def setting_names() -> set[str]:
    """Every ROUTERFORGE_* variable the Settings model reads (nested sections with ``__``)."""
    names = set()
    for name, field in Settings.model_fields.items():
        sub = getattr(field.annotation, "model_fields", None)
        if sub:
            names |= {f"ROUTERFORGE_{name}__{s}".upper() for s in sub}
        else:
            names.add(f"ROUTERFORGE_{name}".upper())
    return names


def env_refs(config: GatewayConfig) -> set[str]:
    """The environment variables a gateway config names (keys, pepper, metrics token)."""
    refs = {m.api_key_env for m in config.models} | {
        d.api_key_env for m in config.models for d in m.deployments
    }
    refs |= {config.key_pepper_env, config.metrics.token_env}
    return {r for r in refs if r}


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions per stage; stage 0 holds the global ARGs before the first FROM."""
    text = (DEPLOY / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    stages: list[list[tuple[str, str]]] = [[]]
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, rest = line.partition(" ")
        if instr.upper() == "FROM":
            stages.append([])
        stages[-1].append((instr.upper(), rest.strip()))
    return stages


def test_dockerfile_multi_stage_non_root_health_checked_no_secrets() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 3, "multi-stage: a build stage and a slim runtime stage"
    # the base image is a build argument (a local base for air-gapped builds), defaulting to the public slim one
    assert ("ARG", "BASE_IMAGE=python:3.11-slim") in stages[0]
    assert [v for i, v in stages[1] + stages[-1] if i == "FROM"] == [
        "${BASE_IMAGE} AS build",
        "${BASE_IMAGE} AS runtime",
    ]
    final = stages[-1]
    users = [v for i, v in final if i == "USER"]
    assert users, "the runtime stage sets a USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert int(user) >= 1000  # a numeric uid, so runAsNonRoot can verify it
    [health] = [v for i, v in final if i == "HEALTHCHECK"]
    path = re.search(r"127\.0\.0\.1:(\d+)(/\w+)", health)
    assert path is not None and path.group(2) in routes() and path.group(2) == "/healthz"
    exposed = {v for i, v in final if i == "EXPOSE"}
    assert exposed == {path.group(1)}
    assert any(i == "COPY" and "--from=build" in v for i, v in final)
    for stage in stages:
        for instr, value in stage:
            if instr in ("ENV", "ARG"):
                for name in re.findall(r"([A-Z_][A-Z0-9_]*)=", value):
                    assert not SECRETISH.search(name), f"{instr} {name}: secrets come from the environment"
                    assert name.startswith(
                        ("ROUTERFORGE_", "PYTHON", "PIP_", "PATH", "HOME", "EXTRAS", "BASE_IMAGE")
                    ), name
                    if name.startswith("ROUTERFORGE_"):
                        assert name in setting_names(), f"{name} is not a routerforge setting"
    ignore = (ROOT / ".dockerignore").read_text()
    assert "!src/" in ignore and ignore.splitlines()[1].strip() == "*"  # nothing but the sources is sent


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_two_gateways_postgres_redis_shared_routers() -> None:
    doc = compose()
    services = doc["services"]
    gateways = [s for n, s in services.items() if n.startswith("gateway")]
    assert len(gateways) == 2 and {"postgres", "redis"} <= set(services)
    config = parse_gateway_config(yaml.safe_load((DEPLOY / "gateway.yaml").read_text()))
    assert config.counters.backend == "redis" and "redis:6379" in config.counters.redis_url
    host_ports = set()
    for gw in gateways:
        env = gw["environment"]
        for name in env:
            if name.startswith("ROUTERFORGE_"):
                assert name in setting_names(), f"{name} is not a routerforge setting"
            else:
                assert name in env_refs(config), f"{name} is set but gateway.yaml names no such variable"
        assert env_refs(config) <= set(env), "every variable gateway.yaml names is set"
        assert env["ROUTERFORGE_DATA__STORE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in env["ROUTERFORGE_DATA__STORE_URL"]
        for name, value in env.items():  # secrets only by reference, never literal values
            if SECRETISH.search(name) or name == "ROUTERFORGE_DATA__STORE_URL":
                assert "${" in str(value), name
        assert "routers:/var/lib/routerforge/routers" in gw["volumes"]
        assert any(v.endswith(":/etc/routerforge/gateway.yaml:ro") for v in gw["volumes"])
        assert gw["read_only"] is True and gw["user"].split(":")[0] == "10001"
        assert set(gw["depends_on"]) == {"postgres", "redis"}
        # the writable home is a tmpfs owned by the gateway's uid (a bare tmpfs is root:0755: found by running it)
        [home] = [m for m in gw["tmpfs"] if m.split(":")[0] == "/var/lib/routerforge"]
        assert "uid=10001" in home and "gid=10001" in home
        probe = " ".join(gw["healthcheck"]["test"])
        assert re.search(r"/(readyz|healthz)'", probe) and "/readyz" in routes()
        [port] = gw["ports"]
        host_ports.add(port.split(":")[1])
        assert port.startswith("127.0.0.1:") and port.endswith(":" + env["ROUTERFORGE_GATEWAY__PORT"])
    assert len(host_ports) == 2
    assert "routers" in doc["volumes"]


def compose_v2() -> list[str] | None:
    """`docker compose` (the plugin) or a standalone Compose v2 `docker-compose`; v1 (EOL) cannot read `name:`."""
    for cmd in (["docker", "compose"], ["docker-compose"]):
        exe = shutil.which(cmd[0])
        if exe is None:
            continue
        cmd = [exe, *cmd[1:]]  # absolute: the subprocess below runs with a minimal PATH
        probe = subprocess.run([*cmd, "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0 and re.search(r"\bv?2\.\d+", probe.stdout):
            return cmd
    return None


def test_compose_config_when_compose_v2_exists() -> None:
    cmd = compose_v2()
    if cmd is None:
        pytest.skip("no Compose v2 here (docker compose plugin or docker-compose v2): see docs/deploy.md")
    env = {"POSTGRES_PASSWORD": "x", "RF_KEY_PEPPER": "y", "PATH": "/usr/bin:/bin:/usr/local/bin"}
    files = [DEPLOY / "compose.yaml", DEPLOY / "airgap" / "compose.airgap.yaml"]
    for n in (1, 2):
        args = [a for f in files[:n] for a in ("-f", str(f))]
        out = subprocess.run(
            [*cmd, *args, "config", "--quiet"], capture_output=True, text=True, env=env, check=False
        )
        assert out.returncode == 0, out.stderr


def test_airgap_override_builds_every_service_from_the_local_base() -> None:
    """deploy/airgap/compose.airgap.yaml: the same services, each built (not pulled) from the BASE_IMAGE arg."""
    base = compose()["services"]
    over = yaml.safe_load((DEPLOY / "airgap" / "compose.airgap.yaml").read_text())["services"]
    assert set(over) == set(base)
    for name, svc in over.items():
        build = svc["build"]
        assert build["network"] == "host" and "BASE_IMAGE" in build["args"], name
        context = (DEPLOY / build["context"]).resolve()  # relative to deploy/, the first compose file's dir
        assert (context / build["dockerfile"]).is_file(), name
        if name in ("postgres", "redis"):
            assert svc["image"] != base[name]["image"]  # never shadows the official image's tag
            assert (context / f"{name}-entrypoint.sh").stat().st_mode & 0o111, "entrypoint is executable"
    assert (DEPLOY / "airgap" / "build-base.sh").stat().st_mode & 0o111


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


@pytest.mark.parametrize(
    "values",
    [
        {},
        {
            "metrics": {"serviceMonitor": {"enabled": True}, "annotations": False},
            "routers": {"existingClaim": "rf"},
        },
    ],
)
def test_helm_chart_renders_to_valid_manifests(values: dict[str, Any]) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "routerforge"
    renderer = Renderer(CHART, values)
    docs = by_kind(renderer.documents())
    assert {"Deployment", "Service", "ConfigMap"} <= set(docs)
    dep = docs["Deployment"]
    pod = dep["spec"]["template"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert docs["Service"]["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    [container] = pod["spec"]["containers"]
    # probes on the gateway's real endpoints
    live, ready = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
    assert (live["path"], ready["path"]) == ("/healthz", "/readyz")
    assert {live["path"], ready["path"]} <= routes()
    assert live["port"] == ready["port"] == container["ports"][0]["name"] == "http"
    # non-root, read-only root file system, no privilege escalation, resources set
    psc, csc = pod["spec"]["securityContext"], container["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] >= 1000
    assert csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["cpu"]
    # writable places are volumes: home (emptyDir), /tmp, the routers claim
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert {"/var/lib/routerforge", "/tmp", "/var/lib/routerforge/routers", "/etc/routerforge"} <= set(mounts)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    claim = values.get("routers", {}).get("existingClaim")
    if claim:
        assert volumes["routers"]["persistentVolumeClaim"]["claimName"] == claim
    else:
        assert "emptyDir" in volumes["routers"]
    # config: the ConfigMap's gateway.yaml is a valid gateway config; every variable it names is set from a Secret
    config = parse_gateway_config(yaml.safe_load(docs["ConfigMap"]["data"]["gateway.yaml"]))
    env = {e["name"]: e for e in container["env"]}
    for name, item in env.items():
        if name.startswith("ROUTERFORGE_"):
            assert name in setting_names(), name
        if SECRETISH.search(name) or name == "ROUTERFORGE_DATA__STORE_URL":
            assert "value" not in item and item["valueFrom"]["secretKeyRef"]["name"] == "routerforge", name
    assert env_refs(config) <= set(env)
    assert env["ROUTERFORGE_GATEWAY__CONFIG_FILE"]["value"] == "/etc/routerforge/gateway.yaml"
    # metrics scraping: annotations or a ServiceMonitor with the metrics token
    annotations = pod["metadata"].get("annotations") or {}
    if values.get("metrics", {}).get("serviceMonitor", {}).get("enabled"):
        [endpoint] = docs["ServiceMonitor"]["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics" and endpoint["port"] == "http"
        assert endpoint["bearerTokenSecret"]["key"] == "metrics-token"
        assert "prometheus.io/scrape" not in annotations
    else:
        assert "ServiceMonitor" not in docs
        assert (
            annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
        )
    assert "/metrics" in routes()


def test_helm_renderer_refuses_what_it_does_not_know(tmp_path: Path) -> None:
    chart = tmp_path / "c"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("a: 1\n")
    (chart / "templates" / "x.yaml").write_text("v: {{ .Values.a | b64enc }}\n")
    with pytest.raises(ValueError, match="b64enc"):
        Renderer(chart).render()
    (chart / "templates" / "x.yaml").write_text("v: {{ .Values.missing }}\n")
    with pytest.raises(KeyError, match="missing"):
        Renderer(chart).render()

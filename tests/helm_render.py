"""A small renderer for the subset of Helm's Go templates that ``deploy/helm/routerforge`` uses, for tests on a
machine without ``helm``: ``{{ .Values.x }}``, ``$``/``$var``, ``include``, ``toYaml``, ``printf``, pipes into
``nindent``/``indent``/``quote``/``trunc``/``trimSuffix``/``sha256sum``, ``if``/``else``/``with``/``range``,
``define``, comments and the ``{{-``/``-}}`` whitespace trimming. Anything else raises, so a template that
outgrows this subset fails the test instead of rendering wrongly."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

TOKEN = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for m in TOKEN.finditer(text):
        chunk = text[pos : m.start()]
        if trim_next:
            chunk = chunk.lstrip()
        if m.group(1):
            chunk = chunk.rstrip()
        out.append(("text", chunk))
        body = m.group(2)
        if not body.startswith("/*"):
            out.append(("action", body))
        trim_next = bool(m.group(3))
        pos = m.end()
    tail = text[pos:]
    out.append(("text", tail.lstrip() if trim_next else tail))
    return out


def _parse(
    tokens: list[tuple[str, str]], i: int = 0, stop: tuple[str, ...] = ()
) -> tuple[list[Any], int, str]:
    nodes: list[Any] = []
    while i < len(tokens):
        kind, value = tokens[i]
        i += 1
        if kind == "text":
            nodes.append(("text", value))
            continue
        word = value.split(" ", 1)[0]
        if word in stop:
            return nodes, i, word
        if word == "if":
            then, i, end = _parse(tokens, i, ("else", "end"))
            other: list[Any] = []
            if end == "else":
                other, i, _ = _parse(tokens, i, ("end",))
            nodes.append(("if", value[3:], then, other))
        elif word in ("with", "define"):
            body, i, _ = _parse(tokens, i, ("end",))
            nodes.append((word, value[len(word) + 1 :], body))
        elif word == "range":
            body, i, _ = _parse(tokens, i, ("end",))
            m = re.fullmatch(r"range\s+\$(\w+)\s*,\s*\$(\w+)\s*:=\s*(.+)", value)
            if m is None:
                raise ValueError(f"unsupported range: {value}")
            nodes.append(("range", (m.group(1), m.group(2), m.group(3)), body))
        elif word in ("end", "else"):
            raise ValueError(f"unexpected {word}")
        else:
            nodes.append(("expr", value))
    return nodes, i, ""


class Renderer:
    def __init__(self, chart: Path, values: dict[str, Any] | None = None, release: str = "rf") -> None:
        meta = yaml.safe_load((chart / "Chart.yaml").read_text())
        base = yaml.safe_load((chart / "values.yaml").read_text()) or {}
        self.root = {
            "Values": _merge(base, values or {}),
            "Chart": {"Name": meta["name"], "Version": meta["version"], "AppVersion": meta.get("appVersion")},
            "Release": {"Name": release, "Namespace": "default", "Service": "Helm"},
        }
        self.defines: dict[str, list[Any]] = {}
        self.templates: dict[str, list[Any]] = {}
        for path in sorted((chart / "templates").iterdir()):
            nodes, _, _ = _parse(_tokens(path.read_text()))
            for node in nodes:
                if node[0] == "define":
                    self.defines[node[1].strip().strip('"')] = node[2]
            if path.suffix == ".yaml":
                self.templates[path.name] = nodes

    def render(self) -> dict[str, str]:
        return {name: self._run(nodes, self.root, {}) for name, nodes in self.templates.items()}

    def documents(self) -> list[dict[str, Any]]:
        docs = []
        for text in self.render().values():
            docs += [d for d in yaml.safe_load_all(text) if d]
        return docs

    # -- evaluation -----------------------------------------------------------------------------
    def _run(self, nodes: list[Any], dot: Any, env: dict[str, Any]) -> str:
        out = []
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "expr":
                out.append(_str(self._pipe(node[1], dot, env)))
            elif kind == "if":
                branch = node[2] if _truthy(self._pipe(node[1], dot, env)) else node[3]
                out.append(self._run(branch, dot, env))
            elif kind == "with":
                value = self._pipe(node[1], dot, env)
                if _truthy(value):
                    out.append(self._run(node[2], value, env))
            elif kind == "range":
                kvar, vvar, expr = node[1]
                value = self._pipe(expr, dot, env)
                items = sorted(value.items()) if isinstance(value, dict) else list(enumerate(value or []))
                for k, v in items:
                    out.append(self._run(node[2], v, {**env, kvar: k, vvar: v}))
        return "".join(out)

    def _pipe(self, expr: str, dot: Any, env: dict[str, Any]) -> Any:
        stages = [s.strip() for s in expr.split("|")]
        value = self._call(shlex.split(stages[0]), dot, env, None)
        for stage in stages[1:]:
            value = self._call(shlex.split(stage), dot, env, value)
        return value

    def _arg(self, word: str, dot: Any, env: dict[str, Any]) -> Any:
        if word == ".":
            return dot
        if word.startswith("$"):
            name, _, rest = word[1:].partition(".")
            base = self.root if name == "" else env[name]
            return _lookup(base, rest)
        if word.startswith("."):
            return _lookup(dot, word[1:])
        return int(word) if word.isdigit() else word

    def _call(self, words: list[str], dot: Any, env: dict[str, Any], piped: Any) -> Any:
        fn, args = words[0], [self._arg(w, dot, env) for w in words[1:]]
        if piped is not None or fn in ("nindent", "indent", "quote", "trunc", "trimSuffix", "sha256sum"):
            args.append(piped)
        if fn.startswith((".", "$")):
            return self._arg(fn, dot, env)
        if fn == "include":
            return self._run(self.defines[args[0]], args[1], {})
        if fn == "toYaml":
            return yaml.safe_dump(args[0], default_flow_style=False, sort_keys=True).rstrip("\n")
        if fn == "printf":
            return args[0] % tuple(args[1:])
        if fn == "nindent":
            return "\n" + _indent(_str(args[1]), args[0])
        if fn == "indent":
            return _indent(_str(args[1]), args[0])
        if fn == "quote":
            return json.dumps(_str(args[0]))
        if fn == "trunc":
            return _str(args[1])[: args[0]]
        if fn == "trimSuffix":
            s = _str(args[1])
            return s[: -len(args[0])] if s.endswith(args[0]) else s
        if fn == "sha256sum":
            return hashlib.sha256(_str(args[0]).encode()).hexdigest()
        raise ValueError(f"template function {fn!r} is not supported by this test renderer")


def _lookup(base: Any, path: str) -> Any:
    value = base
    for part in [p for p in path.split(".") if p]:
        if not isinstance(value, dict) or part not in value:
            raise KeyError(f"no value at .{path} (missing {part!r})")
        value = value[part]
    return value


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _indent(text: str, n: int) -> str:
    return "\n".join((" " * n + line) if line else line for line in text.split("\n"))


def _truthy(value: Any) -> bool:
    return bool(value)


def _str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

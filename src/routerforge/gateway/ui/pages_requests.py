"""``/ui/requests`` (search the request log and the eval data), ``/ui/requests/{id}`` (one request: prompt,
predicted scores, policy and rule, neighbours on request, the answer beside the eval data's answers, feedback,
cost, timings, attempts) and ``/ui/eval/{prompt_id}`` (one stored eval prompt, every model's answer)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter

from routerforge.errors import NotFoundError, RouterForgeError, ValidationError
from routerforge.gateway.ui import layout, svg
from routerforge.gateway.ui.context import UIContext
from routerforge.gateway.ui.layout import attr, esc, fmt_num, fmt_usd
from routerforge.gateway.ui.pages_traffic import window_form, window_of
from routerforge.gateway.ui.queries import REQUEST_ID, DashboardQueries, RequestFilters
from routerforge.gateway.ui.routes import PageRequest, ui_page

MAX_FILTER_CHARS = 200
ANSWER_CHARS = 6000


def _filters(req: PageRequest) -> RequestFilters:
    q = req.query
    for name in ("q", "tenant", "model", "status"):
        if len(q.get(name, "")) > MAX_FILTER_CHARS:
            raise ValidationError(
                f"The {name} filter is longer than {MAX_FILTER_CHARS} characters.", param=name
            )
    before = None
    if q.get("before"):
        try:
            before = dt.datetime.fromisoformat(q["before"])
        except ValueError as exc:
            raise ValidationError("Cannot read the 'before' cursor.", param="before") from exc
        before = before.replace(tzinfo=None)
    return RequestFilters(
        window=window_of(q),
        text=q.get("q", ""),
        tenant=q.get("tenant", "").strip(),
        model=q.get("model", "").strip(),
        status=q.get("status", "").strip(),
        before=before,
    )


def _status_badge(status: int | None) -> str:
    if status is None:
        return layout.badge("?", "info")
    return layout.badge(str(status), "ok" if status < 400 else "warn" if status == 499 else "bad")


def _search_form(req: PageRequest, f: RequestFilters, tenants: list[str], models: list[str]) -> str:
    def options(values: list[str], chosen: str, blank: str) -> str:
        opts = [f'<option value="">{esc(blank)}</option>']
        for v in dict.fromkeys([*values, *([chosen] if chosen else [])]):
            sel = " selected" if v == chosen else ""
            opts.append(f'<option value="{attr(v)}"{sel}>{esc(v)}</option>')
        return "".join(opts)

    statuses = [("", "any status"), ("ok", "ok (< 400)"), ("error", "error (≥ 400)")]
    status_opts = "".join(
        f'<option value="{v}"{" selected" if v == f.status else ""}>{esc(label)}</option>'
        for v, label in statuses
    )
    if f.status and f.status not in ("ok", "error"):
        status_opts += f'<option value="{attr(f.status)}" selected>{esc(f.status)}</option>'
    w = f.window
    custom = ""
    if w.name == "custom":
        custom = (
            f'<input type="hidden" name="start" value="{attr(req.query.get("start", ""))}">'
            f'<input type="hidden" name="end" value="{attr(req.query.get("end", ""))}">'
        )
    return (
        '<form method="get" action="/ui/requests" class="search" id="search">'
        f'<input type="search" name="q" value="{attr(f.text)}" placeholder="text in the prompt, or a request id">'
        f'<select name="tenant">{options(tenants, f.tenant, "any tenant")}</select>'
        f'<select name="model">{options(models, f.model, "any model")}</select>'
        f'<select name="status">{status_opts}</select>'
        f'<input type="hidden" name="window" value="{attr(w.name)}">{custom}'
        '<button type="submit">Search</button></form>'
    )


def render_search(req: PageRequest, queries: DashboardQueries) -> str:
    f = _filters(req)
    gw = req.ctx.gateway_config
    tenants, models = queries.tenants_and_models(
        [t.name for t in gw.tenants], [m.id for m in gw.models] + [s.name for s in gw.synthetic_models]
    )
    rows = queries.search(f)
    keep = {k: req.query.get(k, "") for k in ("q", "tenant", "model", "status")}
    out = [
        "<h1>Requests</h1>",
        window_form("/ui/requests", f.window, keep),
        _search_form(req, f, tenants, models),
    ]
    for note in f.notes:
        out.append(f'<p class="muted">{esc(note)}</p>')
    table_rows = [
        [
            esc(r["created_at"].strftime("%Y-%m-%d %H:%M:%S")),
            f'<a href="/ui/requests/{attr(r["id"])}">{esc(r["id"])}</a>',
            esc(r["tenant"]),
            esc(r["synthetic_model"] or r["requested_model"]),
            esc(r["answered_model"] or "–"),
            _status_badge(r["status"]),
            fmt_usd(r["cost_usd"]),
            fmt_num(r["total_ms"], 0),
            f'<span class="clip">{esc(r["prompt"])}</span>',
        ]
        for r in rows
    ]
    out.append(
        layout.table(
            ["time (UTC)", "request", "tenant", "asked for", "answered by", "status", "cost", "ms", "prompt"],
            table_rows,
            cls="grid results",
            empty="No request matches.",
        )
    )
    if len(rows) >= f.limit:
        nxt = {
            **{k: v for k, v in req.query.items() if k != "before"},
            "before": rows[-1]["created_at"].isoformat(),
        }
        out.append(f'<p><a class="next" href="/ui/requests?{attr(urlencode(nxt))}">Older →</a></p>')
    if f.text.strip():
        found = queries.search_eval(f.text.strip())
        out.append(
            layout.card(
                "Eval data",
                layout.table(
                    ["prompt", "dataset", "key", "records", "text"],
                    [
                        [
                            f'<a href="/ui/eval/{int(e["id"])}">#{int(e["id"])}</a>',
                            esc(e["dataset"]),
                            esc(e["key"]),
                            fmt_num(int(e["records"] or 0)),
                            f'<span class="clip">{esc(e["text"])}</span>',
                        ]
                        for e in found
                    ],
                    empty="No stored eval prompt contains this text.",
                ),
            )
        )
    return "".join(out)


def _predicted(row: dict[str, Any]) -> str:
    decision = row.get("decision") or {}
    predicted = row.get("predicted") or decision.get("predicted") or {}
    prices = decision.get("prices_usd") or {}
    if not predicted:
        return '<p class="muted">No predictions logged (a real model was asked for, or routing failed).</p>'
    chosen = row.get("chosen_model")
    items = sorted(predicted.items(), key=lambda kv: -float(kv[1]))
    bars = svg.hbars([(str(k), float(v)) for k, v in items], label="predicted score per model", fmt="{:.3f}")
    table = layout.table(
        ["model", "predicted score", "price (USD)", ""],
        [
            [
                esc(m),
                fmt_num(float(v), 4),
                fmt_usd(prices.get(m)) if prices.get(m) is not None else "–",
                layout.badge("chosen", "ok") if m == chosen else "",
            ]
            for m, v in items
        ],
    )
    return bars + table


def _decision(row: dict[str, Any]) -> str:
    d = row.get("decision") or {}
    details = d.get("details") or {}
    rules = details.get("rules") or []
    facts = [
        ("policy", esc(row.get("policy") or d.get("policy") or "–")),
        ("knob", fmt_num(row.get("knob") if row.get("knob") is not None else d.get("knob"), 4)),
        ("knob source", esc(details.get("knob_source") or "–")),
        ("rule fired", esc(", ".join(map(str, rules)) or "none")),
        ("reason", esc(row.get("reason") or d.get("reason") or "–")),
        ("fallback chain", esc(" → ".join(d.get("fallbacks") or []) or "–")),
        ("budget shift", fmt_num(d.get("budget_shift"), 3)),
    ]
    if "cascade" in details:
        facts.append(("cascade", esc(" → ".join(details["cascade"].get("order") or []))))
    if "canary" in details:
        facts.append(("canary / shadow", esc(details["canary"])))
    table = layout.table(["", ""], [[esc(k), v] for k, v in facts], cls="kv")
    return table + "<details><summary>logged decision (JSON)</summary>" + layout.json_block(d) + "</details>"


def _explain(ctx: UIContext, row: dict[str, Any], want: bool) -> str:
    syn = row.get("synthetic_model")
    prompt = row.get("prompt")
    if not syn or not prompt:
        return '<p class="muted">Not routed by a router (or no prompt logged): nothing to explain.</p>'
    if not want:
        return (
            f'<p><a class="button" href="/ui/requests/{attr(row["id"])}?explain=1#explain">Show the neighbours / '
            "cluster behind the prediction</a> <span class='muted'>(asks the router now: loads it if needed)</span></p>"
        )
    try:
        target = ctx.routing.resolve(row["tenant"], syn)
        if target.router is None:
            return '<p class="muted">This model name is no longer routed.</p>'
        exp = target.router.explain(prompt)
    except RouterForgeError as exc:
        return f'<p class="error">Cannot explain with the current router for {esc(syn)}: {esc(exc)}</p>'
    details = exp.get("details") or {}
    out = f"<p><strong>{esc(exp.get('router'))}</strong>: {esc(exp.get('reason'))}</p>"
    neighbours = details.get("neighbors") or details.get("neighbours")
    if isinstance(neighbours, list) and neighbours and isinstance(neighbours[0], dict):
        keys = [k for k in neighbours[0] if k != "scores"][:6]
        rows = [[esc(str(n.get(k))[:300]) for k in keys] for n in neighbours[:20]]
        out += layout.table(keys, rows)
    out += "<details><summary>explanation (JSON)</summary>" + layout.json_block(details) + "</details>"
    out += '<p class="muted">Computed now by the router currently serving this name (it may differ from the one that decided).</p>'
    return out


def _answers(row: dict[str, Any], evals: list[dict[str, Any]]) -> str:
    own = (
        f'<div class="answer own"><h3>{esc(row.get("answered_model") or "–")} '
        f'<span class="muted">this request</span></h3><pre class="text">'
        f"{esc((row.get('response_text') or '(no answer logged)')[:ANSWER_CHARS])}</pre></div>"
    )
    others = []
    for e in evals:
        score = "–" if e["score"] is None else fmt_num(e["score"], 3)
        mark = " own" if e["model"] == row.get("answered_model") else ""
        others.append(
            f'<div class="answer{mark}"><h3>{esc(e["model"])} <span class="muted">score {score} · '
            f'{esc(e["dataset"])}</span></h3><pre class="text">{esc((e["response"] or "(no response stored)")[:ANSWER_CHARS])}'
            "</pre></div>"
        )
    note = (
        '<p class="muted">No eval record has this exact prompt text.</p>'
        if not evals
        else f'<p class="muted">{len(evals)} eval records with this exact prompt text '
        f'(<a href="/ui/eval/{int(evals[0]["prompt_id"])}">open the eval prompt</a>).</p>'
    )
    return f'<div class="answers">{own}{"".join(others)}</div>{note}'


def render_request(ctx: UIContext, queries: DashboardQueries, request_id: str, explain: bool) -> layout.Page:
    if not REQUEST_ID.fullmatch(request_id):
        raise ValidationError("That is not a request id.", param="request_id")
    row = queries.request(request_id)
    if row is None:
        ctx.flush()
        row = queries.request(request_id)
    if row is None:
        raise NotFoundError(f"No request {request_id!r} in the log.", hint="Search for it on /ui/requests.")
    evals = queries.eval_answers(row["prompt"]) if row.get("prompt") else []
    facts = [
        ("time (UTC)", esc(row["created_at"].strftime("%Y-%m-%d %H:%M:%S.%f")[:-3])),
        ("tenant", esc(row["tenant"])),
        ("key id", esc(row.get("key_id") or "–")),
        ("endpoint", esc(row["endpoint"]) + (" (stream)" if row.get("stream") else "")),
        ("asked for", esc(row["requested_model"])),
        ("chosen", esc(row.get("chosen_model") or "–")),
        ("answered by", esc(row.get("answered_model") or "–")),
        ("status", _status_badge(row.get("status")) + (f" {esc(row['error'])}" if row.get("error") else "")),
    ]
    usage = [
        (
            "tokens in / out",
            f"{fmt_num(row.get('tokens_in'))} / {fmt_num(row.get('tokens_out'))}"
            + (" (estimated)" if row.get("usage_estimated") else ""),
        ),
        ("cost", fmt_usd(row.get("cost_usd"))),
        ("routing", f"{fmt_num(row.get('routing_ms'), 2)} ms"),
        ("upstream", f"{fmt_num(row.get('upstream_ms'), 1)} ms"),
        ("total", f"{fmt_num(row.get('total_ms'), 1)} ms"),
    ]
    attempts = layout.table(
        ["#", "model", "status", "HTTP", "ms", "error"],
        [
            [
                str(a["seq"]),
                esc(a["model"]),
                layout.badge(
                    a["status"],
                    "ok" if a["status"] == "ok" else "info" if a["status"] == "skipped" else "bad",
                ),
                esc(a.get("status_code") or "–"),
                fmt_num(a.get("latency_ms"), 1),
                f'<span class="clip">{esc(a.get("error"))}</span>',
            ]
            for a in row["attempts"]
        ],
        empty="No upstream attempt (route-only request, or refused before routing).",
    )
    feedback = layout.table(
        ["time (UTC)", "rating", "labels", "comment"],
        [
            [
                esc(fb["created_at"].strftime("%Y-%m-%d %H:%M")),
                fmt_num(fb["rating"], 2),
                esc(", ".join(f"{k}={v}" for k, v in (fb.get("labels") or {}).items())),
                esc(fb.get("comment")),
            ]
            for fb in row["feedback"]
        ],
        empty="No feedback on this request.",
    )
    messages = row.get("messages")
    prompt_html = f'<pre class="text prompt">{esc(row.get("prompt") or "(no prompt logged)")}</pre>'
    if messages:
        prompt_html += "<details><summary>all messages</summary>" + layout.json_block(messages) + "</details>"
    body = (
        f'<h1>Request <code>{esc(request_id)}</code></h1><p><a href="/ui/requests">← search</a></p>'
        '<div class="two">'
        + layout.card("Request", layout.table(["", ""], [[esc(k), v] for k, v in facts], cls="kv"))
        + layout.card("Cost and timings", layout.table(["", ""], [[esc(k), v] for k, v in usage], cls="kv"))
        + "</div>"
        + layout.card("Prompt", prompt_html)
        + '<div class="two">'
        + layout.card("Predicted score per model", _predicted(row))
        + layout.card("Decision", _decision(row))
        + "</div>"
        + f'<section class="card" id="explain"><h2>Neighbours / cluster</h2>{_explain(ctx, row, explain)}</section>'
        + layout.card("Answers", _answers(row, evals))
        + layout.card("Upstream attempts", attempts)
        + layout.card("Feedback", feedback)
    )
    return layout.Page(title=f"Request {request_id}", body=body)


def render_eval(queries: DashboardQueries, prompt_id: str) -> layout.Page:
    if not prompt_id.isdigit() or len(prompt_id) > 18:
        raise ValidationError("That is not an eval prompt id.", param="prompt_id")
    p = queries.eval_prompt(int(prompt_id))
    if p is None:
        raise NotFoundError(f"No eval prompt #{prompt_id}.")
    answers = "".join(
        f'<div class="answer"><h3>{esc(r["model"])} <span class="muted">score '
        f"{'–' if r['score'] is None else fmt_num(r['score'], 3)} · {fmt_usd(r['cost_usd'])} · "
        f'{fmt_num(r["latency_ms"], 0)} ms</span></h3><pre class="text">{esc((r["response"] or "(no response stored)")[:ANSWER_CHARS])}</pre></div>'
        for r in p["records"]
    )
    facts = [
        ("dataset", esc(p["dataset"])),
        ("key", esc(p["key"])),
        ("split", esc(p.get("split") or "–")),
        ("category", esc(p.get("category") or "–")),
        ("reference", esc(p.get("reference") or "–")),
    ]
    body = (
        f"<h1>Eval prompt #{int(p['id'])}</h1>"
        + layout.card(
            "Prompt",
            layout.table(["", ""], [[esc(k), v] for k, v in facts], cls="kv")
            + f'<pre class="text prompt">{esc(p["text"])}</pre>',
        )
        + layout.card(f"{len(p['records'])} answers", f'<div class="answers">{answers}</div>')
    )
    return layout.Page(title=f"Eval prompt {prompt_id}", body=body)


def register(router: APIRouter, ctx: UIContext) -> None:
    queries = DashboardQueries(ctx.db.engine)

    @ui_page(router, ctx, "/requests", title="Requests", active="requests")
    def requests(req: PageRequest) -> str:
        ctx.flush()
        return render_search(req, queries)

    @ui_page(router, ctx, "/requests/{request_id}", title="Request", active="requests")
    def request_page(req: PageRequest) -> layout.Page:
        return render_request(ctx, queries, req.path_params["request_id"], req.query.get("explain") == "1")

    @ui_page(router, ctx, "/eval/{prompt_id}", title="Eval prompt", active="requests")
    def eval_page(req: PageRequest) -> layout.Page:
        return render_eval(queries, req.path_params["prompt_id"])

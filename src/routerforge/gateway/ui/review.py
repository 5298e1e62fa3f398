"""``/ui/review``: the pre-release review page (engineer B; docs/review.md).

- **Replay** (GET form): a candidate router (a directory under the routers dir), the serving synthetic
  model, optional policy kind and knob, and the source — the last N logged requests, the logged shadow
  decisions, or an eval set (dataset + split). Shows n, disagreements, the predicted cost change and the
  quality change where true scores exist, skipped requests, and the disagreement list with both answers
  side by side. The work is :class:`routerforge.gateway.review.Reviewer`, the same as ``routerforge review``.
- **Try a prompt** (POST): both decisions for a typed prompt; with "answers" ticked both models are called
  (it costs money, hence a POST with the CSRF token).
- **Promote / roll back** (POST): :mod:`routerforge.gateway.promote`, the same as the CLI and ``/admin``;
  in the gateway this process reloads at once, the others within ``reload.interval_s``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.responses import RedirectResponse

from routerforge.errors import ValidationError
from routerforge.gateway.ui import layout
from routerforge.gateway.ui.context import UIContext
from routerforge.gateway.ui.routes import PageRequest, ui_page
from routerforge.policy.engine import POLICY_KINDS

log = logging.getLogger("routerforge.gateway.ui")
esc = layout.esc
MAX_UI_LAST = 5000


def _float(value: str | None, name: str) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        out = float(value)
    except ValueError as exc:
        raise ValidationError(f"{name} must be a number, got {value[:40]!r}.", param=name) from exc
    if not math.isfinite(out) or out < 0:
        raise ValidationError(f"{name} must be a finite number ≥ 0.", param=name)
    return out


def _int(value: str | None, name: str, default: int, hi: int) -> int:
    if value is None or not value.strip():
        return default
    try:
        out = int(value)
    except ValueError as exc:
        raise ValidationError(f"{name} must be a whole number, got {value[:40]!r}.", param=name) from exc
    if not 1 <= out <= hi:
        raise ValidationError(f"{name} must be between 1 and {hi}.", param=name)
    return out


def _kind(value: str | None) -> str | None:
    if not value:
        return None
    if value not in POLICY_KINDS:
        raise ValidationError("policy must be threshold, wtp or tolerance.", param="kind")
    return value


def _router_names(ctx: UIContext) -> list[str]:
    from routerforge.policy.trained import router_dirs

    return [key for key in router_dirs(ctx.routers_dir) if not key.startswith("tenants/")]


def _base_config(ctx: UIContext) -> Any:
    svc = ctx.service
    if svc is not None and getattr(svc, "reloader", None) is not None:
        return svc.reloader.base  # type: ignore[union-attr]
    return ctx.gateway_config


def _reload_now(ctx: UIContext) -> None:
    """In the gateway: apply a promotion in this process now (others follow within the poll interval)."""
    svc = ctx.service
    reloader = getattr(svc, "reloader", None)
    if reloader is None:
        return
    import anyio.from_thread

    try:
        anyio.from_thread.run(reloader.check)
    except RuntimeError:  # not called from an anyio worker thread (cannot happen in a page handler)
        log.warning("review page: could not reload at once; the poll will")


def _reviewer(ctx: UIContext, q: dict[str, str]) -> Any:
    from routerforge.gateway.review import Reviewer

    routing = ctx.service.routing if ctx.service is not None else None
    return Reviewer(
        ctx.settings,
        _base_config(ctx),
        candidate=q["candidate"],
        serving=q.get("serving") or None,
        kind=_kind(q.get("kind")),
        knob=_float(q.get("knob"), "knob"),
        routing=routing,
        engine=ctx.db.engine,
    )


def _select(name: str, options: list[str], selected: str | None, *, blank: str | None = None) -> str:
    opts = [] if blank is None else [f'<option value="">{esc(blank)}</option>']
    for o in options:
        sel = " selected" if o == selected else ""
        opts.append(f'<option value="{layout.attr(o)}"{sel}>{esc(o)}</option>')
    return f'<select name="{layout.attr(name)}" id="{layout.attr(name)}">{"".join(opts)}</select>'


def _replay_form(ctx: UIContext, q: dict[str, str]) -> str:
    config = _base_config(ctx)
    synth = [s.name for s in config.synthetic_models]
    source = q.get("source") or "last"
    radios = "".join(
        f'<label><input type="radio" name="source" value="{v}"{" checked" if v == source else ""}> {esc(label)}</label> '
        for v, label in (
            ("last", "last N requests"),
            ("shadow", "logged shadow decisions"),
            ("eval", "eval set"),
        )
    )
    return layout.card(
        "Replay",
        '<form method="get" action="/ui/review" class="window" id="replay-form">'
        f"<label>candidate {_select('candidate', _router_names(ctx), q.get('candidate'))}</label>"
        f"<label>serving {_select('serving', synth, q.get('serving'), blank='(default)')}</label>"
        f"<label>policy {_select('kind', ['threshold', 'wtp', 'tolerance'], q.get('kind'), blank='(serving)')}</label>"
        f'<label>knob <input name="knob" size="6" value="{layout.attr(q.get("knob", ""))}"></label>'
        f"{radios}"
        f'<label>N <input name="last" size="6" value="{layout.attr(q.get("last", "200"))}"></label>'
        f'<label>dataset <input name="dataset" size="12" value="{layout.attr(q.get("dataset", ""))}"></label>'
        f'<label>split <input name="split" size="6" value="{layout.attr(q.get("split", ""))}"></label>'
        '<button type="submit" id="replay">Replay</button></form>',
    )


def _answer(side: dict[str, Any]) -> str:
    text = side.get("answer")
    src = side.get("answer_source")
    if text is None:
        return '<p class="muted">no answer recorded</p>'
    return f'<pre class="answer-text">{esc(text)}</pre><p class="muted">from the {esc(src)}</p>'


def _side(title: str, side: dict[str, Any]) -> str:
    score = side.get("predicted_score")
    true = side.get("true_score")
    extra = "" if true is None else f" · true score {layout.fmt_num(true)}"
    return (
        f'<div class="answer"><strong>{esc(title)}: {esc(side.get("model"))}</strong> '
        f'<span class="muted">predicted {layout.fmt_num(score)} · {layout.fmt_usd(side.get("cost_usd"))}{extra}</span>'
        f"{_answer(side)}</div>"
    )


def _report_html(report: dict[str, Any]) -> str:
    dis = report["disagreements"]
    cost = report["cost_change"]
    q = report["quality_change"]
    stats = [
        ("prompts", layout.fmt_num(report["n"]), report["source"]["kind"]),
        (
            "disagreements",
            layout.fmt_num(dis["count"]),
            "" if dis["share"] is None else f"{dis['share']:.1%}",
        ),
    ]
    if cost:
        rel = "" if cost["relative"] is None else f"{cost['relative']:+.1%}"
        stats.append(
            (
                "cost / request",
                f"{layout.fmt_usd(cost['serving_usd_per_request'])} → {layout.fmt_usd(cost['candidate_usd_per_request'])}",
                rel,
            )
        )
    if q:
        stats.append(
            (
                "quality",
                f"{q['serving']:.3f} → {q['candidate']:.3f}",
                f"{q['absolute']:+.3f} on {q['n_scored']}",
            )
        )
    stats.append(("skipped", layout.fmt_num(report["skipped"]["count"]), ""))
    tiles = "".join(
        f'<div class="stat"><div class="label">{esc(a)}</div><div class="value">{esc(b)}</div>'
        f'<div class="sub">{esc(c)}</div></div>'
        for a, b, c in stats
    )
    reasons = "".join(f"<li>{esc(k)}: {v}</li>" for k, v in report["skipped"]["reasons"].items())
    items = []
    for d in dis["items"]:
        items.append(
            '<div class="group disagreement">'
            f'<p><span class="clip">{esc(d["prompt"])}</span> <span class="muted">{esc(d.get("key") or "")}</span></p>'
            f'<div class="answers">{_side("serving", d["serving"])}{_side("candidate", d["candidate"])}</div></div>'
        )
    body = (
        f'<div class="stats" id="summary">{tiles}</div>'
        + (f"<ul class='muted'>{reasons}</ul>" if reasons else "")
        + (
            "".join(items)
            if items
            else '<p class="muted" id="no-disagreements">The routers agree on every prompt.</p>'
        )
    )
    s, c = report["serving"], report["candidate"]
    title = f"{s['model']} ({Path(str(s['router'])).name}) vs {Path(c['router']).name}"
    return layout.card(title, f'<div id="report">{body}</div>')


def _promote_form(req: PageRequest, q: dict[str, str]) -> str:
    config = _base_config(req.ctx)
    synth = [s.name for s in config.synthetic_models]
    if not synth:
        return layout.card(
            "Promote", '<p class="muted">gateway.yaml names no synthetic model to promote.</p>'
        )
    from routerforge.gateway.assignments import Assignments

    store = Assignments(req.ctx.db.engine)
    current = store.all()
    rows = []
    for name in synth:
        a = current.get(name)
        syn = next(s for s in config.synthetic_models if s.name == name)
        router = a.router if a else syn.router
        source = f"promoted by {a.assigned_by}" if a else "gateway.yaml"
        rows.append([esc(name), esc(Path(router).name), esc(source)])
    audit = store.audit(limit=10)
    audit_rows = [
        [
            esc(r["at"][:19]),
            esc(r["action"]),
            esc(r["synthetic_model"]),
            esc(Path(str(r["router"])).name),
            esc(r["actor"]),
        ]
        for r in audit
    ]
    csrf = layout.csrf_field(req)
    form = (
        '<form method="post" action="/ui/review" class="window" id="promote-form">'
        f'{csrf}<input type="hidden" name="action" value="promote">'
        f"<label>model {_select('model', synth, q.get('serving'))}</label>"
        f"<label>router {_select('router', _router_names(req.ctx), q.get('candidate'))}</label>"
        f"<label>policy {_select('kind', ['threshold', 'wtp', 'tolerance'], q.get('kind'), blank='(keep)')}</label>"
        f'<label>knob <input name="knob" size="6" value="{layout.attr(q.get("knob", ""))}"></label>'
        '<button type="submit" id="promote">Promote</button></form>'
        '<form method="post" action="/ui/review" class="window" id="rollback-form">'
        f'{csrf}<input type="hidden" name="action" value="rollback">'
        f"<label>model {_select('model', synth, q.get('serving'))}</label>"
        '<button type="submit" id="rollback">Roll back</button></form>'
    )
    return layout.card(
        "Promote",
        layout.table(["synthetic model", "router", "source"], rows)
        + form
        + "<h3>audit</h3>"
        + layout.table(
            ["at", "action", "model", "router", "by"], audit_rows, cls="grid audit", empty="No promotion yet."
        ),
    )


def _prompt_form(req: PageRequest, q: dict[str, str], result: str = "") -> str:
    hidden = "".join(
        f'<input type="hidden" name="{k}" value="{layout.attr(q.get(k, ""))}">'
        for k in ("candidate", "serving", "kind", "knob")
    )
    return layout.card(
        "Try a prompt",
        '<form method="post" action="/ui/review" id="prompt-form">'
        f'{layout.csrf_field(req)}<input type="hidden" name="action" value="prompt">{hidden}'
        f'<textarea name="prompt" rows="3" cols="80" id="prompt">{esc(q.get("prompt", ""))}</textarea><br>'
        '<label><input type="checkbox" name="answers" value="1"> also ask both models (costs money)</label> '
        '<button type="submit" id="decide">Decide</button></form>' + result,
    )


def _prompt_result(ctx: UIContext, q: dict[str, str], want_answers: bool) -> str:
    reviewer = _reviewer(ctx, q)
    out = reviewer.decide_prompt(q.get("prompt", ""))
    sides = {"serving": dict(out["serving"]), "candidate": dict(out["candidate"])}
    for side in sides.values():
        side["predicted_score"] = side["predicted"].get(side["model"])
        side["cost_usd"] = (side.get("prices_usd") or {}).get(side["model"])
        side["answer"], side["answer_source"] = None, None
    if want_answers:
        items = [{"prompt": out["prompt"], "serving": sides["serving"], "candidate": sides["candidate"]}]
        reviewer._upstream_answers(items, reviewer.routing.config)
    verdict = layout.badge("agree", "ok") if out["agree"] else layout.badge("disagree", "warn")
    return (
        f'<div id="prompt-result"><p>{verdict}</p><div class="answers">'
        f"{_side('serving', sides['serving'])}{_side('candidate', sides['candidate'])}</div></div>"
    )


def register(router: APIRouter, ctx: UIContext) -> None:
    @ui_page(router, ctx, "/review", title="Review", active="review", methods=("GET", "POST"))
    def review(req: PageRequest) -> Any:
        q = dict(req.query)
        notice = ""
        prompt_result = ""
        if req.method == "POST":
            f = dict(req.form)
            action = f.get("action")
            if action in ("promote", "rollback"):
                return _change(req, f)
            if action == "prompt":
                q.update({k: f.get(k, "") for k in ("candidate", "serving", "kind", "knob", "prompt")})
                if not q.get("candidate"):
                    raise ValidationError("Choose a candidate router first.", param="candidate")
                prompt_result = _prompt_result(req.ctx, q, f.get("answers") == "1")
            else:
                raise ValidationError("Unknown form action.", param="action")
        if q.get("done"):
            notice = f'<p class="notice" id="notice">{esc(q["done"])}</p>'
        parts = ["<h1>Pre-release review</h1>", notice, _replay_form(req.ctx, q)]
        if q.get("candidate") and req.method == "GET":
            source = q.get("source") or "last"
            reviewer = _reviewer(req.ctx, q)
            if source == "eval":
                if not q.get("dataset"):
                    raise ValidationError("An eval-set replay needs a dataset.", param="dataset")
                report = reviewer.run(dataset=q["dataset"], split=q.get("split") or None, max_items=50)
            else:
                last = _int(q.get("last"), "N", 200, MAX_UI_LAST)
                report = reviewer.run(last=last, from_shadow=source == "shadow", max_items=50)
            parts.append(_report_html(report))
        parts.append(_prompt_form(req, q, prompt_result))
        parts.append(_promote_form(req, q))
        return "".join(parts)

    def _change(req: PageRequest, f: dict[str, str]) -> RedirectResponse:
        from routerforge.gateway.promote import promote, rollback

        actor = f"ui:{req.principal.key_id or req.principal.tenant}"
        model = f.get("model", "")
        if f["action"] == "promote":
            out = promote(
                req.ctx.settings,
                _base_config(req.ctx),
                req.ctx.db.engine,
                model,
                f.get("router", ""),
                kind=_kind(f.get("kind")),
                knob=_float(f.get("knob"), "knob"),
                actor=actor,
            )
            done = f"Promoted {Path(out['router']).name} to serve {model} (state version {out['state_version']})."
        else:
            out = rollback(_base_config(req.ctx), req.ctx.db.engine, model, actor=actor)
            done = f"Rolled {model} back to {Path(str(out['router'])).name} (state version {out['state_version']})."
        _reload_now(req.ctx)
        return RedirectResponse("/ui/review?" + urlencode({"done": done}), status_code=303)

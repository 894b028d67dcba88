"""Rendering a simulated timeline for people: each touch's email or task note, and an HTML page."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo

from engine.authoring.templates import RenderedEmail, Renderer
from engine.domain.context import template_context
from engine.domain.correlation import reply_subject
from engine.domain.sequence import Sequence
from engine.domain.timeline import Entry
from engine.errors import RenderError


@dataclass(frozen=True)
class Touch:
    """One timeline row with what the lead would read (or why it could not be rendered)."""

    entry: Entry
    email: RenderedEmail | None = None
    note: str | None = None
    error: str | None = None

    @property
    def summary(self) -> str:
        """The subject of an email, the note of a task, or the render error."""
        if self.error:
            return f"cannot render: {self.error}"
        if self.email:
            return self.email.subject
        return self.note or self.entry.task_kind or ""


def render_entries(
    entries: list[Entry],
    sequences: Mapping[str, Sequence],
    renderer: Renderer,
    lead: Mapping[str, Any],
    sender: Mapping[str, Any],
    unsubscribe_url: str,
) -> list[Touch]:
    """Render every row but a reply's stop with the lead's stage at that moment; a
    `thread: previous` email carries the subject the sender gives it ("Re: <previous>")."""
    touches, last_subject = [], {}  # per sequence (one enrollment each): the last email sent
    for e in entries:
        if e.status == "stopped":
            touches.append(Touch(e))
            continue
        seq = sequences[e.sequence]
        touch = _render(e, seq, renderer, lead, sender, unsubscribe_url)
        email, step_email = touch.email, seq.steps[e.step_index].email
        if email is not None and step_email is not None:
            previous = last_subject.get(e.sequence)
            if step_email.thread == "previous" and previous is not None:
                touch = replace(touch, email=replace(email, subject=reply_subject(previous)))
            if e.status == "scheduled":
                last_subject[e.sequence] = touch.email.subject if touch.email else ""
        touches.append(touch)
    return touches


def _render(entry: Entry, seq: Sequence, renderer: Renderer, lead: Mapping[str, Any],
            sender: Mapping[str, Any], unsubscribe_url: str) -> Touch:
    step = seq.steps[entry.step_index]
    context = template_context(
        {**lead, "stage": entry.stage or ""}, sender, seq, step, entry.touch_number or 0,
        entry.next_at, unsubscribe_url, ZoneInfo(entry.zone),
    )
    try:
        if entry.template:
            return Touch(entry, email=renderer.render_email(entry.template, context))
        note = renderer.render_text(entry.task_note or "", context, name=f"{seq.name}/{step.name}")
        return Touch(entry, note=note)
    except RenderError as exc:
        return Touch(entry, error=exc.message)


_PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 52rem; color: #222; }}
section {{ border: 1px solid #ddd; border-radius: 8px; margin: 1.5rem 0; padding: 1rem; }}
dl {{ display: grid; grid-template-columns: 8rem 1fr; gap: .2rem 1rem; margin: 0 0 1rem; }}
dt {{ color: #666; }} dd {{ margin: 0; }}
iframe {{ width: 100%; height: 28rem; border: 1px solid #eee; }}
pre {{ white-space: pre-wrap; background: #fafafa; padding: .75rem; }}
.skipped {{ opacity: .6; }} .error {{ color: #b00020; }}
</style>
</head>
<body>
<h1>{title}</h1>
{sections}
</body>
</html>
"""


def html_page(title: str, touches: list[Touch], sender: Mapping[str, Any],
              lead: Mapping[str, Any]) -> str:
    """One page a person can open in a browser: every touch with its headers and body."""
    sections = "\n".join(_section(t, sender, lead) for t in touches)
    return _PAGE.format(title=html.escape(title), sections=sections)


def _section(touch: Touch, sender: Mapping[str, Any], lead: Mapping[str, Any]) -> str:
    e = touch.entry
    rows = {
        "When": f"{e.local:%a %d %b %Y %H:%M} ({e.zone}), {e.at:%Y-%m-%d %H:%M} UTC",
        "Step": f"{e.sequence} / {e.step} ({e.channel})",
        "Status": e.status + (f": {e.reason}" if e.reason else ""),
    }
    if touch.email:
        rows["From"] = f"{sender.get('name', '')} <{sender.get('email', '')}>"
        rows["To"] = str(lead.get("email", ""))
        rows["Subject"] = touch.email.subject
    header = "".join(f"<dt>{k}</dt><dd>{html.escape(v)}</dd>" for k, v in rows.items())
    if touch.error:
        body = f'<p class="error">{html.escape(touch.error)}</p>'
    elif touch.email:
        body = (f'<iframe sandbox srcdoc="{html.escape(touch.email.html)}"></iframe>'
                f"<details><summary>Plain-text part</summary>"
                f"<pre>{html.escape(touch.email.text)}</pre></details>")
    else:
        body = f"<pre>{html.escape(touch.summary)}</pre>" if e.status != "stopped" else ""
    css = ' class="skipped"' if e.status == "skipped" else ""
    return f"<section{css}><dl>{header}</dl>{body}</section>"

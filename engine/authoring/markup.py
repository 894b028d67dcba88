"""The parts of an email from one template: Markdown -> HTML, HTML -> text, text -> HTML.

Also the two safety rules of rendered output: lead data cannot become Markdown markup in
the HTML part, and a subject cannot carry a line break or control character.
"""

from __future__ import annotations

import html
import re
import threading
import unicodedata
from typing import Any

import html2text
import markdown
from markupsafe import Markup, escape

from engine.errors import HeaderInjection, RenderError

_DOCUMENT = """<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width"></head>
<body style="font-family: Arial, Helvetica, sans-serif; font-size: 15px; line-height: 1.5; \
color: #222222;">
{body}
</body>
</html>
"""

# Characters that would let a lead's own data add links, images, emphasis or (with `{: ...}`,
# the attribute lists of Markdown Extra) any attribute to our HTML.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]{}])")
# ... and, at the start of a line inside a value, a heading, list, rule, table or code
# block: its indent is dropped and its marker written as an HTML entity (Markdown has no
# backslash escape for some of them; `>` is already &gt;).
_MD_INDENT = re.compile(r"(^|\n)[ \t]+")
_MD_LINE_START = re.compile(r"(^|\n)(?:([#+=|~:-])|(\d+)([.)]))")
MAX_SUBJECT = 900  # RFC 5322 caps a header line at 998 characters, folding included


def markdown_finalize(value: Any) -> Any:
    """Jinja `finalize` for Markdown templates: HTML-escape, then neutralise Markdown syntax."""
    if isinstance(value, Markup):
        return value  # written by the template author (|safe, macros, includes)
    text = _MD_INDENT.sub(r"\1", _MD_SPECIAL.sub(r"\\\1", str(escape(value))))
    return Markup(_MD_LINE_START.sub(_plain_line_start, text))


def _plain_line_start(m: re.Match[str]) -> str:
    """A line of lead data starts as text: its block marker written as an entity."""
    if m.group(2):
        return f"{m.group(1)}&#{ord(m.group(2))};"
    return f"{m.group(1)}{m.group(3)}&#{ord(m.group(4))};"


def markdown_to_html(source: str) -> str:
    """Markdown as people write email: a single line break stays a line break (nl2br)."""
    md = getattr(_converters, "md", None)
    if md is None:
        # Building a converter costs as much as converting a short email (measured by
        # bench/send_throughput.py); one per thread, since a converter keeps state.
        md = _converters.md = markdown.Markdown(extensions=["extra", "sane_lists", "nl2br"],
                                                output_format="html")
    try:
        body = md.convert(source)
    finally:
        md.reset()  # footnotes, abbreviations: nothing carries over to the next email
    return _DOCUMENT.format(body=body)


_converters = threading.local()


def text_to_html(text: str) -> str:
    """A plain-text email as HTML: escaped paragraphs, line breaks kept."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    body = "\n".join(
        "<p>" + "<br>\n".join(html.escape(line) for line in p.splitlines()) + "</p>"
        for p in paragraphs
    )
    return _DOCUMENT.format(body=body)


class _PlainText(html2text.HTML2Text):
    r"""html2text writes Markdown, so it escapes what Markdown would misread (`\-`, `1\.`,
    `\+`); a plain-text part is read by people, so the text goes through as written.
    (html2text has no setting for this: its text is escaped unless it came from an entity.)"""

    def handle_data(self, data: str, entity_char: bool = False) -> None:
        super().handle_data(data, entity_char=True)


def html_to_text(source: str) -> str:
    converter = _PlainText()
    converter.body_width = 0  # no hard wrapping: mail clients wrap, and links stay whole
    converter.ignore_images = True
    converter.ignore_emphasis = True
    return tidy_text(converter.handle(source))


def tidy_text(text: str) -> str:
    """Trailing spaces off, at most one blank line in a row, one final newline."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    joined = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return joined.strip("\n") + "\n"


def check_subject(subject: str, template: str, line: int | None) -> str:
    """The rendered subject, refused if it holds CR, LF, NUL or any other control character."""
    subject = subject.strip(" ")
    for char in subject:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            raise HeaderInjection(
                template, line,
                f"the rendered subject contains a control character "
                f"(U+{ord(char):04X}, {unicodedata.name(char, 'control')}); a subject is one "
                "line of text, so lead data with line breaks cannot go in it",
            )
    if not subject:
        raise RenderError(template, line, "the subject is empty after rendering")
    if len(subject) > MAX_SUBJECT:
        raise RenderError(template, line, f"the subject is longer than {MAX_SUBJECT} characters")
    return subject

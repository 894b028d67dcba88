"""The template renderer: sandbox, escaping, subjects, strict names and error locations."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.authoring.templates import Renderer
from engine.domain.context import default_sample_sender, sample_lead, template_context
from engine.domain.sequence import Sequence
from engine.errors import HeaderInjection, RenderError

FOOTER = "{{ sender.postal_address }}\nUnsubscribe: <{{ unsubscribe_url }}>\n"
TUESDAY = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)
SEQ = Sequence.model_validate(
    {"name": "t", "steps": [{"name": "hello", "after": "0m", "email": {"template": "a.md.j2"}}]}
)


def write(root: Path, name: str, text: str) -> str:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return name


def email(subject: str, body: str) -> str:
    return f'---\nsubject: "{subject}"\n---\n{body}'


def context(next_touch: datetime | None = TUESDAY, **lead: Any) -> dict[str, Any]:
    return template_context(
        sample_lead(lead), default_sample_sender(), SEQ, SEQ.steps[0], 2, next_touch,
        "https://nurture.example/u/tok_en", ZoneInfo("Europe/London"),
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write(tmp_path, "_footer.md.j2", FOOTER)
    return tmp_path


def test_markdown_email_has_subject_text_and_html(root: Path) -> None:
    """A .md.j2 template gives the subject, its Markdown as text, and HTML from Markdown."""
    write(root, "a.md.j2", email("Hi {{ lead.first_name }}", "Hello **{{ lead.first_name }}**"
                                 "\n\n{% include '_footer.md.j2' %}"))
    out = Renderer(root).render_email("a.md.j2", context(first_name="Grace"))
    assert out.subject == "Hi Grace"
    assert out.text.startswith("Hello **Grace**\n")
    assert "<strong>Grace</strong>" in out.html
    assert 'href="https://nurture.example/u/tok_en"' in out.html


def test_lead_data_is_html_escaped_in_the_html_part(root: Path) -> None:
    """A lead's `<script>` reaches the HTML part escaped and the text part as typed."""
    write(root, "a.md.j2", email("Hi", "Hi {{ lead.first_name }}"))
    out = Renderer(root).render_email("a.md.j2", context(first_name="<script>x()</script>"))
    assert "<script>" not in out.html
    assert "&lt;script&gt;x()&lt;/script&gt;" in out.html
    assert "Hi <script>x()</script>" in out.text


def test_lead_data_cannot_add_markdown_links(root: Path) -> None:
    """A lead named `[click](http://evil.example)` gets no link in our HTML."""
    write(root, "a.md.j2", email("Hi", "Hi {{ lead.first_name }}"))
    out = Renderer(root).render_email("a.md.j2", context(first_name="[click](http://evil.example)"))
    assert "<a " not in out.html
    assert "[click](http://evil.example)" in out.html


@pytest.mark.parametrize("value", [
    "Ada\n{: onmouseover=alert(1) style=color:red }",  # Markdown Extra's attribute list
    "reporting\n\n# URGENT: your account is locked\n\n    reset it now",  # heading, code
    "x\n\n- one\n+ two\n\n1. three\n\nTitle\n===\n\n| a | b |\n|---|---|\n| c | d |",
])
def test_lead_data_cannot_add_attributes_or_blocks(root: Path, value: str) -> None:
    """A field sent through a web form cannot give our HTML an attribute, a heading, a list,
    a code block or a table (`{: ...}` gave any attribute, `\n# ...` a heading); the text
    part keeps it as typed."""
    write(root, "a.md.j2", email("Hi", "Hi {{ lead.fields.use_case }}\n\nThanks."))
    out = Renderer(root).render_email("a.md.j2", context(use_case=value))
    body = out.html.split("<body", 1)[1].split(">", 1)[1]
    assert not re.search(r"<(h\d|ul|ol|li|pre|code|table|hr)\b", body), body
    assert not re.search(r"<p [^>]", body), body  # no attribute on a paragraph
    assert "onmouseover" not in body or "{: onmouseover" in body
    assert value.splitlines()[0] in out.text


def test_html_template_is_escaped_and_gets_a_text_part(root: Path) -> None:
    """A .html.j2 template is autoescaped; its text part is derived from the HTML."""
    write(root, "a.html.j2", email("Hi", "<p>Hi <b>{{ lead.company }}</b></p>"))
    out = Renderer(root).render_email("a.html.j2", context(company="A&B <Ltd>"))
    assert "<b>A&amp;B &lt;Ltd&gt;</b>" in out.html
    assert out.text == "Hi A&B <Ltd>\n"


def test_the_text_part_of_an_html_template_has_no_markdown_escapes(root: Path) -> None:
    """html2text's Markdown escapes (\\-, 1\\., \\+) never reach the plain-text part."""
    write(root, "a.html.j2", email("Hi", (
        '<p>1. Pick a day</p><p>- or reply</p><p>+ one more</p><p>C:\\temp\\-x</p>'
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> - Example Inc.</p>')))
    out = Renderer(root).render_email("a.html.j2", context())
    assert out.text == ("1. Pick a day\n\n- or reply\n\n+ one more\n\nC:\\temp\\-x\n\n"
                        "[Unsubscribe](https://nurture.example/u/tok_en) - Example Inc.\n")


def test_text_template_gets_escaped_paragraphs_as_html(root: Path) -> None:
    """A .txt.j2 template's HTML part is its text, escaped, in paragraphs."""
    write(root, "a.txt.j2", email("Hi", "Hi {{ lead.company }},\nline two\n\nBye"))
    out = Renderer(root).render_email("a.txt.j2", context(company="A<B"))
    assert out.text == "Hi A<B,\nline two\n\nBye\n"
    assert "<p>Hi A&lt;B,<br>\nline two</p>\n<p>Bye</p>" in out.html


def test_subject_is_not_html_escaped(root: Path) -> None:
    """The subject is a header, not HTML: `A&B` stays `A&B`."""
    write(root, "a.md.j2", email("News for {{ lead.company }}", "x"))
    assert Renderer(root).render_email("a.md.j2", context(company="A&B")).subject == "News for A&B"


@pytest.mark.parametrize("evil", ["Ada\r\nBcc: all@example.com", "Ada\nX", "Ada\x00", "Ada\u2028",
                                  "Ada\u2029", "Ada\x85", "Ada\x1b[31m"])
def test_control_characters_in_the_subject_are_refused(root: Path, evil: str) -> None:
    """CR, LF, NUL, other controls and Unicode line separators never reach a subject."""
    write(root, "a.md.j2", email("Hi {{ lead.first_name }}", "x"))
    with pytest.raises(HeaderInjection) as caught:
        Renderer(root).render_email("a.md.j2", context(first_name=evil))
    assert (caught.value.template, caught.value.line) == ("a.md.j2", 2)


def test_sandbox_blocks_dunder_attributes(root: Path) -> None:
    """`{{ ''.__class__ }}` is refused: templates cannot reach Python internals."""
    with pytest.raises(RenderError, match="unsafe"):
        Renderer(root).render_text("{{ ''.__class__.__mro__ }}", context())


def test_sandbox_blocks_changing_the_context(root: Path) -> None:
    """Templates cannot mutate what they are given (immutable sandbox)."""
    with pytest.raises(RenderError, match="unsafe"):
        Renderer(root).render_text("{{ lead.fields.update({'x': 1}) }}", context())


def test_undefined_name_is_an_error_with_its_line(root: Path) -> None:
    """StrictUndefined: a misspelt name fails, at its line, with a suggestion."""
    write(root, "a.md.j2", email("Hi", "line 4\n{{ lead.frist_name }}\n"))
    with pytest.raises(RenderError) as caught:
        Renderer(root).render_email("a.md.j2", context())
    assert str(caught.value) == "a.md.j2:5: 'frist_name' is undefined; did you mean 'first_name'?"


def test_undefined_top_level_name_suggests_the_variable(root: Path) -> None:
    """A misspelt variable (`leed`) is named with the right one."""
    with pytest.raises(RenderError, match="'leed' is undefined; did you mean 'lead'"):
        Renderer(root).render_text("{{ leed.email }}", context())


def test_error_inside_an_include_names_the_included_file(root: Path) -> None:
    """An undefined name in a shared footer is reported at the footer's own line."""
    write(root, "_bad.md.j2", "ok\n{{ sender.phone }}\n")
    write(root, "a.md.j2", email("Hi", "{% include '_bad.md.j2' %}"))
    with pytest.raises(RenderError) as caught:
        Renderer(root).render_email("a.md.j2", context())
    assert (caught.value.template, caught.value.line) == ("_bad.md.j2", 2)


def test_syntax_error_is_reported_at_its_line(root: Path) -> None:
    """A Jinja syntax error names the template and the line below the front matter."""
    write(root, "a.md.j2", email("Hi", "one\n{{ lead.first_name }\n"))
    with pytest.raises(RenderError) as caught:
        Renderer(root).render_email("a.md.j2", context())
    assert (caught.value.template, caught.value.line) == ("a.md.j2", 5)
    assert "template syntax error" in caught.value.message


def test_custom_fields_are_reachable_two_ways(root: Path) -> None:
    """`lead.industry` and `lead.fields.industry` both read a custom field."""
    out = Renderer(root).render_text("{{ lead.industry }}/{{ lead.fields.industry }}",
                                     context(industry="SaaS"))
    assert out == "SaaS/SaaS"


def test_weekday_filter_writes_the_day_in_the_leads_zone(root: Path) -> None:
    """`{{ next_touch_at | weekday }}` -> "Tuesday" (and nice_date for the full date)."""
    out = Renderer(root).render_text("{{ next_touch_at | weekday }}, {{ next_touch_at | "
                                     "nice_date }}", context())
    assert out == "Tuesday, Tuesday, March 4"


def test_weekday_of_nothing_explains_the_last_touch(root: Path) -> None:
    """On the last touch next_touch_at is empty; the error says how to guard it."""
    with pytest.raises(RenderError, match="if next_touch_at"):
        Renderer(root).render_text("{{ next_touch_at | weekday }}", context(next_touch=None))


def test_email_without_subject_is_an_error(root: Path) -> None:
    """An email template needs a subject in its front matter."""
    write(root, "a.md.j2", "Hi\n")
    with pytest.raises(RenderError, match="no subject"):
        Renderer(root).render_email("a.md.j2", context())


def test_unquoted_jinja_subject_asks_for_quotes(root: Path) -> None:
    """`subject: {{ x }}` is YAML for a mapping; the error says to quote it."""
    write(root, "a.md.j2", "---\nsubject: {{ lead.first_name }}\n---\nHi\n")
    with pytest.raises(RenderError, match="put the subject in quotes"):
        Renderer(root).render_email("a.md.j2", context())


def test_unclosed_front_matter_is_an_error(root: Path) -> None:
    """A front matter without its closing `---` says so at line 1."""
    write(root, "a.md.j2", '---\nsubject: "Hi"\nHi\n')
    with pytest.raises(RenderError, match="not closed") as caught:
        Renderer(root).render_email("a.md.j2", context())
    assert caught.value.line == 1


def test_template_outside_the_directory_is_refused(root: Path) -> None:
    """A name with `..` cannot read files outside the templates directory."""
    write(root.parent, "secret.md.j2", email("s", "secret"))
    with pytest.raises(RenderError, match="no such template"):
        Renderer(root).render_email("../secret.md.j2", context())


def test_unknown_template_kind_is_refused(root: Path) -> None:
    """Only .md.j2, .html.j2 and .txt.j2 are email templates."""
    write(root, "a.j2", email("Hi", "x"))
    with pytest.raises(RenderError, match=r"\*\.md\.j2"):
        Renderer(root).render_email("a.j2", context())


def test_task_note_renders_without_html(root: Path) -> None:
    """render_text renders a note as plain text, with no escaping."""
    note = Renderer(root).render_text("Call {{ lead.first_name }} at {{ lead.company }}",
                                      context(first_name="Ada", company="A&B"))
    assert note == "Call Ada at A&B"


@pytest.mark.parametrize(("source", "said"), [
    ("{{ lead.first_name | upper }", "unexpected '}'; close `{{` with `}}` and `{%` with `%}`"),
    ("{{ lead.first_name | uper }}", "no filter named 'uper'; did you mean 'upper'?"),
    ("{% for x in lead.fields %}{{ x }}", "the template ends inside a `{% for %}` block; "
                                          "close it with `{% endfor %}`"),
])
def test_a_syntax_error_says_how_to_fix_it(tmp_path: Path, source: str, said: str) -> None:
    """The three mistakes authors make most, each with its fix (Jinja's sentence alone was
    'unexpected }' or 'No filter named ...' with no hint)."""
    (tmp_path / "t.md.j2").write_text(f"---\nsubject: Hi\n---\n{source}\n")
    with pytest.raises(RenderError) as caught:
        Renderer(tmp_path).render_email("t.md.j2", {"lead": {"first_name": "Ada"}})
    assert caught.value.message == f"t.md.j2:4: template syntax error: {said}"

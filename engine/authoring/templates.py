"""Rendering authored Jinja2 templates into emails (subject, text, HTML) and task notes.

Templates are authored content, so they run in Jinja2's immutable sandbox; undefined names
are errors (StrictUndefined); lead data is HTML-escaped. Every failure is a RenderError
naming the template file and line.
"""

from __future__ import annotations

import difflib
import re
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from engine.authoring import markup
from engine.authoring.yamlload import NotUtf8, load_text, read_utf8, syntax_problem
from engine.domain.context import FILTERS
from engine.errors import RenderError

KINDS = (".md.j2", ".html.j2", ".txt.j2")
FRONT_MATTER_KEYS = ("subject",)
_FENCE = re.compile(r"^---[ \t]*$")


@dataclass
class RenderedEmail:
    """One rendered email. Plain (not frozen) so it satisfies services.ports.Rendered."""

    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class FrontMatter:
    """The `---` block at the top of an email template."""

    subject: str | None
    subject_line: int
    end_line: int  # the line of the closing `---` (0 when there is no block)


class _Undefined(jinja2.StrictUndefined):
    """StrictUndefined whose message says what was meant, when a close name exists."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        name, obj = self._undefined_name, self._undefined_obj
        if obj is missing or not isinstance(obj, Mapping):
            return str(jinja2.StrictUndefined._undefined_message.fget(self))  # type: ignore[attr-defined]
        close = _close(str(name), obj)
        if close:
            return f"'{name}' is undefined; did you mean '{close}'?"
        return (f"'{name}' is undefined (for a lead's custom field, add it to the sequence's "
                "sample_lead, or write | default(\"...\"))")


def _close(name: str, known: Any) -> str | None:
    """The known name closest to a misspelt one, if any is close."""
    close = difflib.get_close_matches(name, [str(k) for k in known], n=1, cutoff=0.6)
    return close[0] if close else None


class _Loader(jinja2.FileSystemLoader):
    """Reads templates with the front matter blanked out, so Jinja's line numbers stay true."""

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        meta = parse_front_matter(source, template)
        if meta.end_line:
            lines = source.split("\n")
            source = "\n" * meta.end_line + "\n".join(lines[meta.end_line:])
        return source, filename, uptodate


def parse_front_matter(source: str, name: str) -> FrontMatter:
    lines = source.split("\n")
    if not lines or not _FENCE.match(lines[0]):
        return FrontMatter(None, 0, 0)
    end = next((i for i in range(1, len(lines)) if _FENCE.match(lines[i])), None)
    if end is None:
        raise RenderError(name, 1, "the front matter is not closed; end it with a line '---'")
    block = "\n".join(lines[1:end])
    try:
        data = load_text(block) or {}
    except yaml.MarkedYAMLError as exc:
        problem = syntax_problem(name, exc)
        message = problem.message
        if re.search(r":\s*\{[{%]", block):  # YAML reads an unquoted {{ as a mapping
            message = "put the subject in quotes: subject: \"Hello {{ lead.first_name }}\""
        raise RenderError(name, (problem.line or 0) + 1, message) from None
    if not isinstance(data, dict):
        raise RenderError(name, 2, "the front matter must be 'key: value' lines, e.g. "
                                   "subject: \"Quick question\"")
    for i, key in enumerate(data):
        if key not in FRONT_MATTER_KEYS:
            close = _close(str(key), FRONT_MATTER_KEYS)
            hint = f"did you mean '{close}'?" if close else "the only key is 'subject'"
            raise RenderError(name, _key_line(lines, key, i + 2),
                              f"unknown front-matter key '{key}'; {hint}")
    subject = data.get("subject")
    line = _key_line(lines, "subject", 2)
    if subject is not None and not isinstance(subject, str):
        raise RenderError(name, line, "the subject must be text; put it in quotes: "
                                      "subject: \"Hello {{ lead.first_name }}\"")
    return FrontMatter(subject, line, end + 1)


def _key_line(lines: list[str], key: Any, default: int) -> int:
    pattern = re.compile(rf"^\s*{re.escape(str(key))}\s*:")
    return next((i + 1 for i, text in enumerate(lines) if pattern.match(text)), default)


def _environment(loader: jinja2.BaseLoader, autoescape: bool,
                 finalize: Callable[[Any], Any] | None = None,
                 frozen: bool = False) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        loader=loader, autoescape=autoescape, undefined=_Undefined, finalize=finalize,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        auto_reload=not frozen, cache_size=-1 if frozen else 400,
    )
    env.filters.update(FILTERS)
    return env


class Renderer:
    """Renders the templates under one directory.

    `frozen`: a template once read is kept as it was (no re-read when the file changes), so
    the daemon renders exactly what load_catalog validated until the next reload.
    """

    def __init__(self, templates_dir: Path, frozen: bool = False) -> None:
        self.templates_dir = Path(templates_dir)
        self.frozen = frozen
        loader = _Loader(str(self.templates_dir), encoding="utf-8")
        self._plain = _environment(loader, autoescape=False, frozen=frozen)
        self._html = _environment(loader, autoescape=True, frozen=frozen)
        self._markdown = _environment(loader, autoescape=True,
                                      finalize=markup.markdown_finalize, frozen=frozen)
        # The send loop renders the same few templates thousands of times: keep the parsed
        # front matter (re-read when the file changes) and the compiled subjects and notes.
        self._fronts: dict[str, tuple[int, str, FrontMatter]] = {}
        self._strings: dict[str, jinja2.Template] = {}

    def exists(self, name: str) -> bool:
        return (self.templates_dir / name).is_file()

    def check(self, name: str) -> None:
        """Compile a template (front matter, subject, body) without rendering it."""
        kind, front = self._front(name)
        with self._errors(name, front.subject_line):
            self._plain.from_string(front.subject or "")
        with self._errors(name):
            self._env(kind).get_template(name)

    def render_email(self, name: str, context: Mapping[str, Any]) -> RenderedEmail:
        kind, front = self._front(name)
        if not front.subject:
            raise RenderError(name, 1, "no subject; start the file with a front-matter block: "
                                       "'---', 'subject: \"...\"', '---'")
        with self._errors(name, front.subject_line, context):
            subject = self._compiled(front.subject).render(context)
        subject = markup.check_subject(subject, name, front.subject_line)
        with self._errors(name, context=context):
            body = self._env(kind).get_template(name).render(context)
            text = self._plain.get_template(name).render(context) if kind == ".md.j2" else ""
        if kind == ".md.j2":
            return RenderedEmail(subject, markup.tidy_text(text), markup.markdown_to_html(body))
        if kind == ".html.j2":
            return RenderedEmail(subject, markup.html_to_text(body), body)
        return RenderedEmail(subject, markup.tidy_text(body), markup.text_to_html(body))

    def render_text(self, source: str, context: Mapping[str, Any], name: str = "<note>") -> str:
        """A short text (a task note) with the same rules, no HTML."""
        with self._errors(name, context=context):
            return self._compiled(source).render(context).strip()

    def _compiled(self, source: str) -> jinja2.Template:
        template = self._strings.get(source)
        if template is None:
            template = self._strings[source] = self._plain.from_string(source)
        return template

    def _front(self, name: str) -> tuple[str, FrontMatter]:
        cached = self._fronts.get(name)
        if cached is not None and self.frozen:
            return cached[1], cached[2]
        path = self.templates_dir / name
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            mtime = -1
        if cached is not None and cached[0] == mtime:
            return cached[1], cached[2]
        kind, front = self._read_front(name)
        self._fronts[name] = (mtime, kind, front)
        return kind, front

    def _read_front(self, name: str) -> tuple[str, FrontMatter]:
        kind = next((k for k in KINDS if name.endswith(k)), None)
        if kind is None:
            raise RenderError(name, None, "unknown kind of template; name it *.md.j2 (Markdown),"
                                          " *.html.j2 (HTML) or *.txt.j2 (plain text)")
        path = self.templates_dir / name
        if ".." in Path(name).parts or not path.is_file():
            raise RenderError(name, None, f"no such template file in {self.templates_dir}/")
        try:
            source = read_utf8(path)
        except NotUtf8 as exc:
            raise RenderError(name, exc.line, str(exc)) from None
        except OSError as exc:
            raise RenderError(name, None, f"cannot read the template: {exc}") from None
        return kind, parse_front_matter(source, name)

    def _env(self, kind: str) -> ImmutableSandboxedEnvironment:
        return {".md.j2": self._markdown, ".html.j2": self._html}.get(kind, self._plain)

    @contextmanager
    def _errors(self, name: str, line: int | None = None,
                context: Mapping[str, Any] | None = None) -> Iterator[None]:
        """Any failure inside a template becomes RenderError(file, line, sentence)."""
        try:
            yield
        except RenderError:
            raise
        except jinja2.TemplateSyntaxError as exc:
            where = self._name_of(exc.filename) or exc.name or name
            message = f"template syntax error: {_syntax_hint(exc.message or '', self._plain)}"
            raise RenderError(where, line or exc.lineno, message) from None
        except jinja2.TemplateNotFound as exc:
            raise RenderError(name, line or self._line_in(exc, name)[1],
                              f"includes '{exc.name}', which does not exist") from None
        except (jinja2.TemplateError, ValueError, TypeError, ArithmeticError, LookupError,
                AttributeError) as exc:
            where, at = self._line_in(exc, name)
            raise RenderError(where, line or at, _sentence(exc, context)) from None
        except (MemoryError, RecursionError) as exc:
            # Authored content must not take the daemon down: this render fails, and the
            # touch with it (caught here, the stack is unwound and the memory freed).
            where, at = self._line_in(exc, name)
            raise RenderError(where, line or at, _EXHAUSTED[type(exc)]) from None

    def _line_in(self, exc: BaseException, name: str) -> tuple[str, int | None]:
        """The innermost template frame of the traceback: (template name, line)."""
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename == "<template>":
                return name, frame.lineno
            found = self._name_of(frame.filename)
            if found:
                return found, frame.lineno
        return name, None

    def _name_of(self, filename: str | None) -> str | None:
        if not filename or filename == "<template>":
            return None
        try:
            return Path(filename).resolve().relative_to(self.templates_dir.resolve()).as_posix()
        except ValueError:
            return None


_EXHAUSTED = {
    MemoryError: "the template needs more memory than there is (a huge repetition, e.g. "
                 "'x' * 10**9?)",
    RecursionError: "the template calls itself without end (a macro or include that "
                    "recurses?)",
}


def _sentence(exc: BaseException, context: Mapping[str, Any] | None) -> str:
    message = str(getattr(exc, "message", None) or exc)
    top = re.fullmatch(r"'(\w+)' is undefined", message)
    if top and context is not None:
        close = _close(top.group(1), [*context, *FILTERS])
        message += f"; did you mean '{close}'?" if close else (
            f"; the variables are: {', '.join(context)}")
    return message


def _syntax_hint(message: str, env: jinja2.Environment) -> str:
    """Jinja's sentence, with how to fix the mistakes authors make most."""
    if message in ("unexpected '}'", "unexpected '%'"):
        return f"{message}; close `{{{{` with `}}}}` and `{{%` with `%}}`"
    unknown = re.match(r"No (filter|test) named '([^']+)'", message)
    if unknown:
        kind, name = unknown.groups()
        known = env.filters if kind == "filter" else env.tests
        close = difflib.get_close_matches(name, list(known), n=1)
        return f"no {kind} named '{name}'" + (f"; did you mean '{close[0]}'?" if close else "")
    block = re.search(r"innermost block that needs to be closed is '(\w+)'", message)
    if message.startswith("Unexpected end of template") and block:
        return (f"the template ends inside a `{{% {block.group(1)} %}}` block; close it with "
                f"`{{% end{block.group(1)} %}}`")
    return message

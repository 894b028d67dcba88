"""YAML loading that remembers the line of every key and list item, so problems point at lines.

Sequence files are read with a YAML 1.2-like resolver: only true/false are booleans (a
`country: NO` stays the string "NO") and there are no base-60 numbers (`10:30` stays text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.errors import Problem

Loc = tuple[str | int, ...]


class Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's surprises (yes/no/on/off booleans, sexagesimal, octal)."""

    yaml_implicit_resolvers: dict[str, list[tuple[str, re.Pattern[str]]]] = {}


def _resolver(tag: str, pattern: str, first: str) -> None:
    Loader.add_implicit_resolver(f"tag:yaml.org,2002:{tag}", re.compile(pattern), list(first))


_resolver("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF")
_resolver("int", r"^[-+]?(?:0|[1-9][0-9]*)$", "-+0123456789")
_resolver(
    "float",
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
    r"|\.(?:nan|NaN|NAN))$",
    "-+0123456789.",
)
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)
_resolver("timestamp", r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}$", "0123456789")
_resolver("merge", r"^(?:<<)$", "<")


def _date_or_text(loader: Loader, node: yaml.ScalarNode) -> Any:
    """A date; an impossible one (2026-13-45) stays text, so validation names its line
    and still checks the rest of the file, instead of the parser failing on it."""
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


Loader.add_constructor("tag:yaml.org,2002:timestamp", _date_or_text)


class NotUtf8(ValueError):
    """A sequence or template file with a byte that is not UTF-8 (saved as Latin-1, say)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def read_utf8(path: Path | str) -> str:
    """The file's text; NotUtf8 names the line and byte of the first one that is not."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise NotUtf8(line, f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x}); save "
                            "it as UTF-8 in your editor") from None


@dataclass
class Document:
    """A parsed YAML file: the plain data plus the 1-based line of every key and item."""

    path: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line(self, loc: Loc) -> int:
        """The line of `loc`, or of its nearest ancestor that exists in the file."""
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return 1

    def problem(self, loc: Loc, message: str) -> Problem:
        return Problem(self.path, self.line(loc), message)


def load_document(
    path: Path | str, text: str | None = None
) -> tuple[Document | None, list[Problem]]:
    """Parse one file. A syntax error gives (None, [problem]); duplicate keys are problems."""
    name = str(path)
    try:
        source = read_utf8(path) if text is None else text
    except NotUtf8 as exc:
        return None, [Problem(name, exc.line, str(exc))]
    except OSError as exc:
        return None, [Problem(name, None, f"cannot read the file: {exc.strerror or exc}")]
    loader = Loader(source)
    try:
        node = loader.get_single_node()
        doc = Document(name, None, {(): 1 if node is None else node.start_mark.line + 1})
        problems: list[Problem] = []
        if node is not None:
            _walk(loader, node, (), doc, problems)
            doc.data = loader.construct_document(node)
        return doc, problems
    except yaml.MarkedYAMLError as exc:
        return None, [syntax_problem(name, exc)]
    except yaml.YAMLError as exc:
        return None, [Problem(name, None, f"this is not valid YAML: {exc}")]
    finally:
        loader.dispose()


def _walk(loader: Loader, node: yaml.Node, loc: Loc, doc: Document, out: list[Problem]) -> None:
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            doc.lines[(*loc, i)] = item.start_mark.line + 1
            _walk(loader, item, (*loc, i), doc, out)
    elif isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                out.append(Problem(doc.path, line, "a key must be a plain word, not a list"))
                continue
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor`: the merged keys are checked where the anchor is
            key = loader.construct_object(key_node)
            if key in seen:
                out.append(Problem(
                    doc.path, line,
                    f"duplicate key '{key}' (already on line {seen[key]}); keep one of them",
                ))
                continue
            seen[key] = line
            doc.lines[(*loc, key)] = line
            _walk(loader, value_node, (*loc, key), doc, out)


_ONE_DOC = "the file holds more than one YAML document ('---'); keep one per file"

# Plain sentences for PyYAML's scanner and parser messages, by the start of the message.
_PLAIN = (
    ("found character '\\t'", "a tab character: YAML indents with spaces only"),
    ("mapping values are not allowed", "unexpected ':' here; put a value that contains ': ' in "
                                       "quotes, or check the line above"),
    ("could not find expected ':'", "expected 'key: value' here; check this line's indentation "
                                    "and the line above it"),
    ("expected <block end>", "this line's indentation does not match the lines above it"),
    ("found unexpected end of stream", "the file ends inside a quoted value; add the closing "
                                       "quote"),
    ("found unhashable key", "a key must be a plain word, not a list or mapping"),
    ("found undefined alias", "an alias (*name) refers to no anchor (&name)"),
    ("expected a single document", _ONE_DOC),
    ("but found another document", _ONE_DOC),
    ("expected ',' or ']'", "a '[' list opened here is not closed; add the ']'"),
    ("expected ',' or '}'", "a '{' mapping opened here is not closed; add the '}'"),
    ("found unknown escape character", "an unknown backslash escape inside double quotes; use "
                                       "single quotes or write '\\\\'"),
)


def syntax_problem(name: str, exc: yaml.MarkedYAMLError) -> Problem:
    """A YAML syntax error as `file:line: plain sentence`."""
    problem = exc.problem or str(exc)
    mark = exc.problem_mark or exc.context_mark
    opened = ("quoted scalar", "flow sequence", "flow mapping")
    if any(w in (exc.context or "") for w in opened) and exc.context_mark is not None:
        mark = exc.context_mark  # point at the quote or bracket that was never closed
    for start, sentence in _PLAIN:
        if problem.startswith(start):
            message = sentence
            break
    else:
        message = f"this is not valid YAML: {problem}"
    return Problem(name, mark.line + 1 if mark else None, message)


def load_text(text: str) -> Any:
    """Parse a small YAML fragment (a template's front matter); raises MarkedYAMLError."""
    loader = Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()

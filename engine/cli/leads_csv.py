"""Reading a CSV of leads for `nurture import`: encoding, header, rows, and what was ignored.

Spreadsheets save CSV as UTF-8 (with or without a BOM) or, from Excel's "Unicode text",
UTF-16 with a BOM; both are read. Anything else (a Latin-1 export) is refused with the line
and byte that is not UTF-8, rather than guessed: a wrong guess garbles names silently.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import ConfigError, InvalidLead

EMAIL_COLUMNS = ("email", "e-mail", "email_address", "mail")
Row = tuple[int, dict[str, str]]


@dataclass
class LeadsCsv:
    """One CSV file of leads, checked: its encoding, header and row count."""

    path: Path
    encoding: str
    names: list[str]  # normalised column names; '' for a column without a name
    email_column: str
    total: int
    warnings: list[str] = field(default_factory=list)
    _long_rows: list[int] = field(default_factory=list)  # lines with more cells than the header
    _blank_rows: int = 0

    def rows(self) -> Iterator[Row]:
        """(line, fields) for each data row; cells without a column name are left out."""
        with self.path.open(newline="", encoding=self.encoding) as f:
            reader = csv.reader(f)
            next(reader, None)
            for values in reader:
                if not any(v.strip() for v in values):
                    self._blank_rows += 1  # a spreadsheet's trailing `,,,,` rows
                    continue
                if len(values) > len(self.names):
                    self._long_rows.append(reader.line_num)
                data = {name: value.strip() for name, value in zip(self.names, values,
                                                                     strict=False) if name}
                data["email"] = data.pop(self.email_column, "")
                yield reader.line_num, data
        self._note_skipped()

    def _note_skipped(self) -> None:
        if self._blank_rows:
            self.warnings.append(f"{self.path}: {self._blank_rows} empty row(s) were skipped")
        if self._long_rows:
            n, first = len(self._long_rows), self._long_rows[0]
            self.warnings.append(f"{self.path}: {n} row(s) have more cells than the header "
                                 f"(first on line {first}); the extra cells were ignored")


def open_leads_csv(path: Path) -> LeadsCsv:
    """Check the file's encoding and header; InvalidLead saying what to fix otherwise."""
    try:
        with path.open("rb") as f:
            encoding = _encoding(f.read(4))
        with path.open(newline="", encoding=encoding) as f:
            reader = csv.reader(f)
            header = next(reader, [])
            # Decodes the whole file: a bad byte shows up now. Records, not lines: a quoted
            # cell may span lines, and the progress bar counts rows as rows() yields them.
            total = sum(1 for values in reader if any(v.strip() for v in values))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidLead(_not_utf8(path, encoding)) from None
    if not any(h.strip() for h in header):
        raise InvalidLead(f"{path}: the file is empty or its first line is; the first line "
                          "must name the columns, one of them 'email'")
    names = [h.strip().lower().replace(" ", "_") for h in header]
    _check_duplicates(path, names)
    email_column = next((n for n in names if n in EMAIL_COLUMNS), None)
    if email_column is None:
        raise InvalidLead(f"{path}: line 1: no email column (columns: {', '.join(header)}); "
                          "name one column 'email'")
    warnings = [f"{path}: column {i} has no name in the header (line 1); its cells were "
                "ignored" for i, name in enumerate(names, 1) if not name]
    return LeadsCsv(path, encoding, names, email_column, total, warnings)


def _encoding(head: bytes) -> str:
    """UTF-16/32 when the file starts with their byte-order mark, else UTF-8 (BOM or not)."""
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return "utf-8-sig"


def _not_utf8(path: Path, encoding: str) -> str:
    data = path.read_bytes()  # only on this error path: find the exact byte
    try:
        data.decode(encoding)
        start = 0
    except UnicodeDecodeError as exc:
        start = exc.start
    line = data.count(b"\n", 0, start) + 1
    what = "UTF-8" if encoding == "utf-8-sig" else encoding.upper()
    byte = data[start:start + 1].hex() or "--"
    return (f"{path}: line {line}, byte {start}: the file is not {what} text (byte "
            f"0x{byte}); save it as UTF-8 (in Excel: Save As > 'CSV UTF-8') and import it "
            "again")


def _check_duplicates(path: Path, names: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(names, 1):
        if name and name in seen:
            raise InvalidLead(f"{path}: line 1: columns {seen[name]} and {i} are both named "
                              f"'{name}'; rename or remove one so it is clear which to use")
        seen.setdefault(name, i)

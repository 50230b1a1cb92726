"""Import the audience (companies, endusers) from CSV or JSON files.

Reading, validating and matching rows is pure; `import_file` does the reads and writes in one
transaction, loading what it needs in bulk rather than row by row.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, get_args

from sqlalchemy import Connection, Engine, Table, bindparam, select

from store.schema import companies, endusers

Kind = Literal["companies", "endusers"]
KINDS: tuple[Kind, ...] = get_args(Kind)
REQUIRED: dict[Kind, str] = {"companies": "name", "endusers": "email"}
# Columns with a meaning of their own; every other column is an attribute.
FIELDS: dict[Kind, frozenset[str]] = {
    "companies": frozenset({"name", "domain"}),
    "endusers": frozenset({"email", "name", "role", "company", "tracking_opt_out"}),
}
CSV_SUFFIXES = frozenset({".csv", ".tsv", ".txt"})
CHUNK = 500  # keys per IN (...) query: well under SQLite's bound-parameter limit
MAX_TEXT = 200  # the String(200) columns: names and roles
MAX_CELL = 10_000  # characters in one cell or one JSON string
MAX_NESTING = 32  # levels of [ and { in a JSON file or a JSON-list cell

_FLAGS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")
_PORT = re.compile(r":\d*$")
_LABEL = re.compile(r"[^\W_](?:(?:[^\W_]|-)*[^\W_])?")
# A JSON string (perhaps unterminated) or a bracket: what nesting is counted from.
_JSON_NESTING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)

R = TypeVar("R")


class ImportFileError(Exception):
    """The whole file cannot be imported; the message says why and how to fix it."""


class _BadValue(Exception):
    """One row cannot be imported; the message is the BadRow reason."""


@dataclass(frozen=True)
class BadRow:
    line: int  # CSV: the line in an editor (header is line 1); JSON: the record number from 1
    reason: str


@dataclass
class ImportReport:
    kind: Kind
    created: int
    updated: int
    unchanged: int
    bad_rows: list[BadRow]
    dry_run: bool
    row_label: Literal["line", "record"] = "line"  # what BadRow.line counts
    # Endusers written with no company: no company column, and no company has their domain.
    without_company: list[str] = field(default_factory=list)

    def summary(self) -> str:
        skipped = len(self.bad_rows)
        lines = [
            f"{self.kind}: {self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged, {skipped} bad {'row' if skipped == 1 else 'rows'} skipped"
        ]
        lines += [f"{self.row_label} {bad.line}: {bad.reason}" for bad in self.bad_rows]
        if missing := len(self.without_company):
            shown = ", ".join(self.without_company[:3]) + (", …" if missing > 3 else "")
            lines.append(
                f"{missing} {'enduser has' if missing == 1 else 'endusers have'} no company, "
                f"as no company has the domain of their email ({shown}): import the companies "
                "first, or name each one's company in a company column"
            )
        if self.dry_run:
            lines.append("dry run: nothing was written")
        return "\n".join(lines)


# --- Reading files ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    records: list[tuple[int, dict[str, Any]]]
    columns: list[str] | None  # None: a JSON file without records, so nothing to check
    text_cells: bool  # CSV: every value is spreadsheet text, typed by `cell_value`
    row_label: Literal["line", "record"]


def detect_kind(path: Path) -> Kind:
    name = path.name.lower()
    is_companies = "compan" in name
    is_endusers = any(word in name for word in ("enduser", "user", "contact", "people"))
    if is_companies != is_endusers:
        return "companies" if is_companies else "endusers"
    raise ImportFileError(
        f"cannot tell from the name {path.name!r} whether it holds companies or endusers: "
        "pass --kind companies or --kind endusers"
    )


def read_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The file's records, each with the line (CSV) or record number (JSON) a user looks for."""
    return read_source(path).records


def read_source(path: Path) -> Source:
    suffix = path.suffix.lower()
    if suffix != ".json" and suffix not in CSV_SUFFIXES:
        raise ImportFileError(
            f"{path.name}: cannot import {suffix or 'files without an extension'}; "
            "save it as CSV (UTF-8) or JSON"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror}") from None
    try:
        text, not_utf8 = data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        not_utf8 = ImportFileError(
            f"{path.name} is not UTF-8 text (bad byte at offset {exc.start}): "
            "save it as CSV UTF-8 or JSON"
        )
        if suffix == ".json":
            raise not_utf8 from None
        # A bad byte in one row is that row's mistake (see _check_text), but a file whose
        # header or every row has one was saved in another encoding.
        text = data.decode("utf-8-sig", errors="surrogateescape")
    if suffix == ".json":
        return _read_json(path.name, text)
    source = _read_csv(path.name, text)
    if not_utf8 is not None and (
        not _is_utf8("".join(source.columns or []))
        or not any(_is_utf8("".join(record.values())) for _, record in source.records)
    ):
        raise not_utf8
    return source


def _read_csv(name: str, text: str) -> Source:
    # Spreadsheets in some locales save with semicolons; the header line tells which it is.
    header_line = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = max(",;\t", key=header_line.count)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header: list[str] | None = None
    records: list[tuple[int, dict[str, Any]]] = []
    start = 1
    try:
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header = _header(name, cells)
                continue
            records.append((line, _csv_record(name, line, header, cells)))
    except csv.Error as exc:
        raise ImportFileError(f"{name} line {reader.line_num}: {exc}") from None
    if header is None:
        raise ImportFileError(f"{name} is empty: the first line must name the columns")
    return Source(records, [c for c in header if c], text_cells=True, row_label="line")


def _header(name: str, cells: list[str]) -> list[str]:
    header = [cell.strip() for cell in cells]
    seen: set[str] = set()
    for column in header:
        if column and column.lower() in seen:
            raise ImportFileError(f"{name}: column {column!r} appears twice in the header")
        seen.add(column.lower())
    return header


def _csv_record(name: str, line: int, header: list[str], cells: list[str]) -> dict[str, Any]:
    extra = cells[len(header) :]
    if any(cell.strip() for cell in extra):
        raise ImportFileError(
            f"{name} line {line} has {len(cells)} cells but the header has {len(header)} "
            "columns: put cells that contain the separator in double quotes"
        )
    record: dict[str, Any] = {}
    for position, column in enumerate(header):
        cell = cells[position] if position < len(cells) else ""
        if column:
            record[column] = cell
        elif cell.strip():
            raise ImportFileError(
                f"{name} line {line} has a value in column {position + 1}, which has no name "
                "in the header: name that column"
            )
    return record


def _read_json(name: str, text: str) -> Source:
    too_deep = _too_deep(text)
    if too_deep is not None:
        line = text.count("\n", 0, too_deep) + 1
        column = too_deep - text.rfind("\n", 0, too_deep)
        raise ImportFileError(
            f"{name} is nested more than {MAX_NESTING} levels deep at line {line}, "
            f"column {column}: flatten the records' values"
        )
    try:
        data = json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise ImportFileError(
            f"{name} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    if not isinstance(data, list):
        raise ImportFileError(
            f"{name}: expected a JSON list of objects ([{{...}}, ...]), not {_json_type(data)}"
        )
    records: list[tuple[int, dict[str, Any]]] = []
    columns: dict[str, None] = {}  # ordered set
    for number, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise ImportFileError(
                f"{name}: record {number} is {_json_type(item)}; every record must be an object"
            )
        records.append((number, {key.strip(): value for key, value in item.items()}))
        columns.update(dict.fromkeys(records[-1][1]))
    return Source(records, list(columns) if records else None, False, row_label="record")


def _too_deep(text: str) -> int | None:
    """Where a JSON text opens more than MAX_NESTING levels, before json.loads recurses."""
    depth = 0
    for match in _JSON_NESTING.finditer(text):
        bracket = match.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > MAX_NESTING:
                return match.start()
        elif bracket in ("]", "}"):
            depth -= 1
    return None


def _parse_int(digits: str) -> int | float:
    # int() refuses more than 4,300 digits; float() makes such a number inf, which
    # _check_value then refuses for its row alone.
    return int(digits) if len(digits) <= 400 else float(digits)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false"}
    return "null" if value is None else names.get(type(value), "a number")


# --- Values ----------------------------------------------------------------------------------


def cell_value(text: str, column: str) -> Any:
    """A CSV cell as the JSON value it stands for; None for an empty cell (not set)."""
    text = text.strip()
    if not text:
        return None
    if text.startswith("["):
        if _too_deep(text) is not None:
            raise _BadValue(f"{column} is a list nested more than {MAX_NESTING} levels deep")
        try:
            value = json.loads(text, parse_int=_parse_int)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, list):
            shown = text if len(text) <= 50 else f"{text[:40]}…"
            raise _BadValue(
                f'{column} {shown!r} is not a valid JSON list: write it like ["A", "B"]'
            )
        _check_value(value, column)
        return value
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        # A whole number beyond what a float holds stays text, as 1e999 does.
        if str(int(text)) == text and _fits(int(text)):
            return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
        if math.isfinite(number) and str(number) == text:
            return number
    except ValueError:
        pass
    return text


def _check_value(value: Any, column: str) -> None:
    """Refuse what a database cannot store or compare; walked without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_text(item, column)
        elif isinstance(item, float | int) and not isinstance(item, bool) and not _fits(item):
            shown = (
                json.dumps(item) if isinstance(item, float) else f"a {len(str(item))}-digit number"
            )
            raise _BadValue(
                f"{column} holds {shown}: NaN, Infinity and numbers beyond 1.8e308 cannot be "
                "stored; write a number or leave it empty"
            )
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            for key in item:
                _check_text(key, f"a key in {column}")
            stack.extend(item.values())


def _check_text(text: str, column: str) -> None:
    if len(text) > MAX_CELL:
        raise _BadValue(
            f"{column} is {len(text):,} characters long, more than {MAX_CELL:,}: shorten it"
        )
    if "\x00" in text:
        raise _BadValue(f"{column} holds a NUL character, which cannot be stored: remove it")
    if not _is_utf8(text):
        bad = next(char for char in text if "\ud800" <= char <= "\udfff")
        if "\udc80" <= bad <= "\udcff":  # a byte that did not decode (surrogateescape)
            byte = ord(bad) - 0xDC00
            raise _BadValue(f"{column} is not UTF-8 text (byte 0x{byte:x}): save the file as UTF-8")
        raise _BadValue(f"{column} holds half of a surrogate pair, which is not text: remove it")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _fits(number: float) -> bool:
    try:
        return math.isfinite(float(number))
    except OverflowError:
        return False


def normalize_domain(value: str) -> str:
    """'https://www.Acme.example/about' -> 'acme.example'; ValueError unless a domain remains."""
    domain = _SCHEME.sub("", value.strip().lower())
    domain = re.split(r"[/?#]", domain, maxsplit=1)[0]
    domain = _PORT.sub("", domain).removeprefix("www.").rstrip(".")
    if not _is_domain(domain):
        raise ValueError(f"{value!r} is not a domain")
    return domain


def normalize_email(value: str) -> str:
    email = value.strip().lower()
    local, _, domain = email.rpartition("@")
    if (
        email.count("@") != 1
        or not local
        or any(char.isspace() for char in email)
        or not _is_domain(domain)
        or len(email) > 320
    ):
        raise ValueError(f"{value!r} is not an email address")
    return email


def _is_domain(domain: str) -> bool:
    labels = domain.split(".")
    return (
        len(domain) <= 253
        and len(labels) >= 2
        and not labels[-1].isdigit()  # an IP address is not a company's domain
        and all(len(label) <= 63 and _LABEL.fullmatch(label) for label in labels)
    )


def _text(value: Any, column: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _BadValue(f"{column} must be text, not {_json_type(value)}")
    value = value.strip()
    if len(value) > MAX_TEXT:
        raise _BadValue(f"{column} is {len(value)} characters long; shorten it to {MAX_TEXT}")
    return value or None


def _flag(value: Any, column: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return None
        if text in _FLAGS:
            return _FLAGS[text]
    shown = repr(value) if isinstance(value, str) else json.dumps(value)
    raise _BadValue(f"{column} {shown} must be one of true, false, yes, no, 1, 0")


# --- Rows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompanyRow:
    line: int
    name: str
    domain: str | None
    attributes: dict[str, Any]


@dataclass(frozen=True)
class EnduserRow:
    line: int
    email: str
    name: str | None  # None: keep what is stored ("" for a new enduser)
    role: str | None
    company: str | None  # a company's name; None: keep the stored one, else by email domain
    tracking_opt_out: bool | None
    attributes: dict[str, Any]


def parse_company(line: int, record: Mapping[str, Any], text_cells: bool) -> CompanyRow:
    known, attributes = _split(record, FIELDS["companies"], text_cells)
    name = _text(known.get("name"), "name")
    if name is None:
        raise _BadValue("name is empty: every company needs a name")
    raw_domain = _text(known.get("domain"), "domain")
    domain = None
    if raw_domain is not None:
        try:
            domain = normalize_domain(raw_domain)
        except ValueError:
            raise _BadValue(
                f"domain {raw_domain!r} does not look like a domain: "
                "write it like acme.example, or leave it empty"
            ) from None
    return CompanyRow(line, name, domain, attributes)


def parse_enduser(line: int, record: Mapping[str, Any], text_cells: bool) -> EnduserRow:
    known, attributes = _split(record, FIELDS["endusers"], text_cells)
    raw_email = known.get("email")
    if raw_email is None or (isinstance(raw_email, str) and not raw_email.strip()):
        raise _BadValue("email is empty: every enduser needs an email address")
    try:
        if not isinstance(raw_email, str):
            raise ValueError(raw_email)
        email = normalize_email(raw_email)
    except ValueError:
        shown = repr(raw_email) if isinstance(raw_email, str) else json.dumps(raw_email)
        raise _BadValue(
            f"email {shown} is not a valid address: write one address like name@company.example"
        ) from None
    return EnduserRow(
        line,
        email,
        name=_text(known.get("name"), "name"),
        role=_text(known.get("role"), "role"),
        company=_text(known.get("company"), "company"),
        tracking_opt_out=_flag(known.get("tracking_opt_out"), "tracking_opt_out"),
        attributes=attributes,
    )


def _split(
    record: Mapping[str, Any], fields: frozenset[str], text_cells: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the known fields by their lower-case name, the attributes that are set)"""
    known: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for key, raw in record.items():
        column = key.strip()
        _check_text(column, "a column name")
        _check_value(raw, column)
        if column.lower() in fields:
            known[column.lower()] = raw
            continue
        value = cell_value(raw, column) if text_cells and isinstance(raw, str) else raw
        if value is not None:
            attributes[column] = value
    return known, attributes


def parse_rows(
    source: Source, parse: Callable[[int, Mapping[str, Any], bool], R]
) -> tuple[list[R], list[BadRow]]:
    rows: list[R] = []
    bad: list[BadRow] = []
    for line, record in source.records:
        try:
            rows.append(parse(line, record, source.text_cells))
        except _BadValue as exc:
            bad.append(BadRow(line, str(exc)))
    return rows, bad


# --- Matching against what is stored (pure) --------------------------------------------------


@dataclass(frozen=True)
class CompanyRef:
    id: int
    name: str
    domain: str | None


class _Named(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def domain(self) -> str | None: ...


N = TypeVar("N", bound=_Named)


def _name_key(name: str) -> str:
    # casefold in Python, not lower() in SQL: SQLite's lower() only knows ASCII.
    return name.strip().casefold()


def _index(items: Sequence[N]) -> tuple[dict[str, N], dict[str, list[N]]]:
    """(by domain, by case-insensitive name): names need not be unique."""
    by_name: dict[str, list[N]] = {}
    for item in items:
        by_name.setdefault(_name_key(item.name), []).append(item)
    return {item.domain.lower(): item for item in items if item.domain}, by_name


class CompanyDirectory:
    """The stored companies by domain and by case-insensitive name."""

    def __init__(self, refs: Sequence[CompanyRef]) -> None:
        self.by_domain, self.by_name = _index(refs)

    def for_email(self, email: str) -> CompanyRef | None:
        """The company whose domain is the email's, or a parent of it (eu.acme.example)."""
        labels = email.rpartition("@")[2].split(".")
        for start in range(len(labels) - 1):
            ref = self.by_domain.get(".".join(labels[start:]))
            if ref is not None:
                return ref
        return None

    def company_id(self, row: EnduserRow, stored_company_id: int | None) -> int | None:
        if row.company is None:
            # A company set earlier (perhaps by name) outranks a guess from the email domain.
            if stored_company_id is not None:
                return stored_company_id
            ref = self.for_email(row.email)
            return None if ref is None else ref.id
        named = self.by_name.get(_name_key(row.company), [])
        if len(named) > 1:
            by_domain = self.for_email(row.email)
            named = [ref for ref in named if ref == by_domain]
            if len(named) != 1:
                raise _BadValue(
                    f"company {row.company!r} is the name of several companies: rename one, "
                    "or leave the cell empty to match by the email's domain"
                )
        if not named:
            raise _BadValue(
                f"company {row.company!r} not found: import companies first or fix the name"
            )
        return named[0].id


@dataclass
class CompanyTarget:
    """A company the file touches: a stored one (id set) or a new one."""

    stored: CompanyRef | None
    name: str
    domain: str | None
    attributes: dict[str, Any] = field(default_factory=dict)
    touched: bool = False


def match_companies(
    rows: Sequence[CompanyRow], stored: Sequence[CompanyRef]
) -> tuple[list[CompanyTarget], list[BadRow]]:
    """Each row's company: by domain, else by name. Rows for the same company: the last wins."""
    targets = [CompanyTarget(ref, ref.name, ref.domain) for ref in stored]
    by_domain, by_name = _index(targets)
    bad: list[BadRow] = []
    for row in rows:
        target = by_domain.get(row.domain) if row.domain else None
        if target is None:
            named = by_name.get(_name_key(row.name), [])
            if row.domain:
                # A company known by name only gets the domain it was missing.
                named = [t for t in named if t.domain is None]
            if len(named) > 1:
                bad.append(
                    BadRow(
                        row.line,
                        f"name {row.name!r} matches {len(named)} companies"
                        f"{' without a domain' if row.domain else ''}: "
                        "give each company its domain so that rows match by domain",
                    )
                )
                continue
            target = named[0] if named else None
        if target is None:
            target = CompanyTarget(None, row.name, None)
            targets.append(target)
            by_name.setdefault(_name_key(row.name), []).append(target)
        elif _name_key(target.name) != _name_key(row.name):
            by_name[_name_key(target.name)].remove(target)
            by_name.setdefault(_name_key(row.name), []).append(target)
        if row.domain:
            target.domain = row.domain
            by_domain[row.domain] = target
        target.name = row.name
        target.attributes = row.attributes
        target.touched = True
    return [t for t in targets if t.touched], bad


@dataclass
class Writes:
    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)  # with "row_id"
    unchanged: int = 0

    def upsert(
        self, stored: Mapping[str, Any] | None, wanted: dict[str, Any], now: datetime
    ) -> None:
        """`stored`: the stored row (with its "id"), or None to create one."""
        if stored is None:
            self.inserts.append(wanted)
        elif all(stored[key] == value for key, value in wanted.items()):
            self.unchanged += 1
        else:
            self.updates.append({**wanted, "updated_at": now, "row_id": stored["id"]})


def plan_companies(
    targets: Sequence[CompanyTarget], stored_attributes: Mapping[int, dict[str, Any]], now: datetime
) -> Writes:
    writes = Writes()
    for target in targets:
        stored = None
        attributes = target.attributes
        if target.stored is not None:
            old = stored_attributes[target.stored.id]
            stored = {**asdict(target.stored), "attributes": old}
            attributes = {**old, **attributes}
        wanted = {"name": target.name, "domain": target.domain, "attributes": attributes}
        writes.upsert(stored, wanted, now)
    return writes


def plan_endusers(
    rows: Sequence[EnduserRow],
    directory: CompanyDirectory,
    stored: Mapping[str, Mapping[str, Any]],
    now: datetime,
) -> tuple[Writes, list[BadRow]]:
    """`stored`: the stored endusers by email, each with its id and columns."""
    latest: dict[str, dict[str, Any]] = {}
    bad: list[BadRow] = []
    for row in rows:
        old = stored.get(row.email)
        try:
            company_id = directory.company_id(row, None if old is None else old["company_id"])
        except _BadValue as exc:
            bad.append(BadRow(row.line, str(exc)))
            continue
        latest[row.email] = {  # a later row for the same email wins
            "email": row.email,
            "name": _keep(row.name, old, "name", ""),
            "role": _keep(row.role, old, "role", ""),
            "company_id": company_id,
            "tracking_opt_out": _keep(row.tracking_opt_out, old, "tracking_opt_out", False),
            "attributes": {**(old["attributes"] if old else {}), **row.attributes},
        }
    writes = Writes()
    for email, wanted in latest.items():
        writes.upsert(stored.get(email), wanted, now)
    return writes, bad


def _keep(value: Any, old: Mapping[str, Any] | None, column: str, default: Any) -> Any:
    if value is not None:
        return value
    return default if old is None else old[column]


# --- The database ----------------------------------------------------------------------------


def import_file(
    engine: Engine,
    path: Path,
    kind: Kind | None = None,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> ImportReport:
    if kind is None:
        kind = detect_kind(path)
    elif kind not in KINDS:
        raise ImportFileError(f"unknown kind {kind!r}: use companies or endusers")
    source = read_source(path)
    _check_columns(path, kind, source)
    now = now or datetime.now(UTC)

    if kind == "companies":
        company_rows, bad = parse_rows(source, parse_company)
        with _transaction(engine, dry_run) as connection:
            writes, unmatched = _import_companies(connection, company_rows, now)
            _write(connection, companies, writes)
    else:
        enduser_rows, bad = parse_rows(source, parse_enduser)
        with _transaction(engine, dry_run) as connection:
            writes, unmatched = _import_endusers(connection, enduser_rows, now)
            _write(connection, endusers, writes)
    written = writes.inserts + writes.updates if kind == "endusers" else []
    return ImportReport(
        kind=kind,
        created=len(writes.inserts),
        updated=len(writes.updates),
        unchanged=writes.unchanged,
        bad_rows=sorted(bad + unmatched, key=lambda b: b.line),
        dry_run=dry_run,
        row_label=source.row_label,
        without_company=[w["email"] for w in written if w["company_id"] is None],
    )


@contextmanager
def _transaction(engine: Engine, dry_run: bool) -> Iterator[Connection]:
    """One transaction, committed unless this is a dry run."""
    with engine.connect() as connection, connection.begin() as transaction:
        yield connection
        if dry_run:
            transaction.rollback()


def _check_columns(path: Path, kind: Kind, source: Source) -> None:
    required = REQUIRED[kind]
    if source.columns is None or required in (c.lower() for c in source.columns):
        return
    where = "column" if source.text_cells else "field in any record"
    have = ", ".join(repr(c) for c in source.columns) or "none"
    raise ImportFileError(
        f"{path.name} has no {required!r} {where}, which {kind} need "
        f"(it has: {have}): add it, or pass the other --kind if this is the wrong file"
    )


def _import_companies(
    connection: Connection, rows: Sequence[CompanyRow], now: datetime
) -> tuple[Writes, list[BadRow]]:
    targets, bad = match_companies(rows, _company_refs(connection))
    ids = [t.stored.id for t in targets if t.stored is not None]
    attributes: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(ids):
        query = select(companies.c.id, companies.c.attributes).where(companies.c.id.in_(chunk))
        attributes.update({r.id: dict(r.attributes) for r in connection.execute(query)})
    return plan_companies(targets, attributes, now), bad


def _import_endusers(
    connection: Connection, rows: Sequence[EnduserRow], now: datetime
) -> tuple[Writes, list[BadRow]]:
    e = endusers.c
    columns = (e.id, e.email, e.name, e.role, e.company_id, e.tracking_opt_out, e.attributes)
    stored: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(sorted({row.email for row in rows})):
        query = select(*columns).where(e.email.in_(chunk))
        stored.update({r.email: dict(r._mapping) for r in connection.execute(query)})
    directory = CompanyDirectory(_company_refs(connection))
    return plan_endusers(rows, directory, stored, now)


def _company_refs(connection: Connection) -> list[CompanyRef]:
    # Names match case-insensitively, which no index serves; ids, names and domains of every
    # company are small next to the endusers, so one query reads them all.
    query = select(companies.c.id, companies.c.name, companies.c.domain)
    return [CompanyRef(r.id, r.name, r.domain) for r in connection.execute(query)]


def _write(connection: Connection, table: Table, writes: Writes) -> None:
    if writes.inserts:
        connection.execute(table.insert(), writes.inserts)
    if writes.updates:
        connection.execute(table.update().where(table.c.id == bindparam("row_id")), writes.updates)


def _chunks(items: Sequence[R], size: int = CHUNK) -> Iterator[Sequence[R]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from textwrap import dedent
from typing import Any, cast

import pytest
from sqlalchemy import Engine, event, select

from outreach.filter_sql import audience_select, to_sql
from outreach.filters import parse
from outreach.importer import (
    BadRow,
    ImportFileError,
    ImportReport,
    Kind,
    cell_value,
    detect_kind,
    import_file,
    normalize_domain,
    normalize_email,
    read_records,
)
from store.schema import companies, endusers

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOW = datetime(2024, 6, 1, 9, 30, tzinfo=UTC)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def counts(report: ImportReport) -> tuple[int, int, int]:
    return report.created, report.updated, report.unchanged


def stored_companies(engine: Engine) -> dict[str, dict[str, Any]]:
    """By domain, or by name for a company without one."""
    with engine.connect() as connection:
        rows = connection.execute(select(companies)).mappings()
        return {row["domain"] or row["name"]: dict(row) for row in rows}


def stored_endusers(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as connection:
        return {r["email"]: dict(r) for r in connection.execute(select(endusers)).mappings()}


def company_of(engine: Engine, email: str) -> str | None:
    company_id = stored_endusers(engine)[email]["company_id"]
    by_id = {row["id"]: key for key, row in stored_companies(engine).items()}
    return None if company_id is None else by_id[company_id]


def import_examples(engine: Engine) -> None:
    for name in ("companies.csv", "endusers.csv", "endusers.json"):
        assert import_file(engine, EXAMPLES / name, now=NOW).bad_rows == []


# --- Importing the examples ------------------------------------------------------------------


def test_examples_import_companies_then_endusers(engine: Engine) -> None:
    report = import_file(engine, EXAMPLES / "companies.csv", now=NOW)
    assert (report.kind, counts(report), report.bad_rows) == ("companies", (6, 0, 0), [])
    report = import_file(engine, EXAMPLES / "endusers.csv", now=NOW)
    assert (report.kind, counts(report), report.bad_rows) == ("endusers", (12, 0, 0), [])
    report = import_file(engine, EXAMPLES / "endusers.json", now=NOW)
    assert (counts(report), report.bad_rows, report.row_label) == ((3, 0, 0), [], "record")

    acme = stored_companies(engine)["acme-logistics.example"]
    assert acme["name"] == "Acme Logistics"
    assert acme["attributes"] == {
        "region": "West Coast",
        "products": ["Tracking", "Alerts"],
        "plan": "enterprise",
    }
    assert acme["updated_at"] is None
    assert stored_companies(engine)["umbrella-retail.example"]["attributes"]["products"] == []

    people = stored_endusers(engine)
    assert len(people) == 15
    dana = people["dana.reyes@acme-logistics.example"]
    assert (dana["name"], dana["role"], dana["tracking_opt_out"]) == (
        "Dana Reyes",
        "decision maker",
        False,
    )
    assert dana["attributes"] == {"seats": 120, "signed_up": "2023-11-02"}
    assert people["tom.becker@bluebird-health.example"]["tracking_opt_out"] is True
    nora = people["nora.fischer@northwind.example"]
    assert nora["attributes"] == {"seats": 300, "teams": ["Procurement", "Logistics"], "beta": True}
    # JSON keeps its types: a string of digits stays a string.
    assert people["ava.kowalski@globex.example"]["attributes"] == {"zip": "02139"}


@pytest.mark.parametrize(
    ("email", "company"),
    [
        ("dana.reyes@acme-logistics.example", "acme-logistics.example"),  # by name
        ("sam.okafor@acme-logistics.example", "acme-logistics.example"),  # by email domain
        ("jules.martin@freelance-ops.example", "umbrella-retail.example"),  # by name only
        ("nora.fischer@northwind.example", "northwind.example"),  # JSON, by email domain
        ("ben.ito@acme-logistics.example", "acme-logistics.example"),  # JSON, by name
    ],
)
def test_examples_link_endusers_to_their_company(engine: Engine, email: str, company: str) -> None:
    import_examples(engine)
    assert company_of(engine, email) == company


def test_importing_the_same_files_again_changes_nothing(engine: Engine) -> None:
    import_examples(engine)
    before = stored_endusers(engine)
    assert counts(import_file(engine, EXAMPLES / "companies.csv", now=NOW)) == (0, 0, 6)
    assert counts(import_file(engine, EXAMPLES / "endusers.csv", now=NOW)) == (0, 0, 12)
    assert counts(import_file(engine, EXAMPLES / "endusers.json", now=NOW)) == (0, 0, 3)
    assert stored_endusers(engine) == before


# --- Upserts ---------------------------------------------------------------------------------


def test_a_second_company_import_updates_and_merges_attributes(
    engine: Engine, tmp_path: Path
) -> None:
    import_file(engine, EXAMPLES / "companies.csv", now=NOW)
    path = write(
        tmp_path,
        "companies-update.csv",
        """
        name,domain,plan,owner
        Acme Logistics,acme-logistics.example,enterprise,
        Bluebird Health Inc,https://www.Bluebird-Health.example/about,enterprise,Kim
        Zenith Labs,zenith.example,,
        """,
    )
    report = import_file(engine, path, now=NOW)
    assert (counts(report), report.bad_rows) == ((1, 1, 1), [])

    stored = stored_companies(engine)
    bluebird = stored["bluebird-health.example"]
    assert bluebird["name"] == "Bluebird Health Inc"
    assert bluebird["attributes"] == {
        "region": "East Coast",
        "products": ["Tracking"],
        "plan": "enterprise",
        "owner": "Kim",
    }
    assert bluebird["updated_at"] == NOW
    assert stored["acme-logistics.example"]["updated_at"] is None
    assert stored["zenith.example"]["attributes"] == {}
    assert len(stored) == 7


def test_a_second_enduser_import_updates_only_what_it_sets(engine: Engine, tmp_path: Path) -> None:
    import_examples(engine)
    path = write(
        tmp_path,
        "endusers-update.csv",
        """
        email,role,seats,tracking_opt_out
        " DANA.REYES@acme-logistics.example ",admin,150,
        lee.chen@acme-logistics.example,user,,
        """,
    )
    report = import_file(engine, path, now=NOW)
    assert (counts(report), report.bad_rows) == ((0, 1, 1), [])

    people = stored_endusers(engine)
    dana = people["dana.reyes@acme-logistics.example"]
    assert (dana["name"], dana["role"], dana["tracking_opt_out"]) == ("Dana Reyes", "admin", False)
    assert dana["attributes"] == {"seats": 150, "signed_up": "2023-11-02"}
    assert dana["updated_at"] == NOW
    assert company_of(engine, "dana.reyes@acme-logistics.example") == "acme-logistics.example"
    assert people["lee.chen@acme-logistics.example"]["updated_at"] is None


def test_a_company_known_by_name_gets_its_domain(engine: Engine, tmp_path: Path) -> None:
    first = write(tmp_path, "companies-1.csv", "name,tier\nSolo Consulting,small\n")
    second = write(tmp_path, "companies-2.csv", "name,domain\nSOLO consulting,solo.example\n")
    assert counts(import_file(engine, first, now=NOW)) == (1, 0, 0)
    assert counts(import_file(engine, second, now=NOW)) == (0, 1, 0)
    # Without a domain, the row finds it by name again.
    third = write(tmp_path, "companies-3.csv", "name,tier\nSOLO consulting,small\n")
    assert counts(import_file(engine, third, now=NOW)) == (0, 0, 1)
    solo = stored_companies(engine)["solo.example"]
    assert (solo["name"], solo["attributes"]) == ("SOLO consulting", {"tier": "small"})


def test_a_company_name_shared_by_several_companies_needs_a_domain(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "companies.csv",
        """
        name,domain,plan
        Acme,acme.example,pro
        Acme,acme-eu.example,pro
        acme,,starter
        """,
    )
    report = import_file(engine, path, now=NOW)
    assert counts(report) == (2, 0, 0)
    assert report.bad_rows == [
        BadRow(4, "name 'acme' matches 2 companies: give each company its domain so that rows "
               "match by domain")
    ]  # fmt: skip


def test_later_rows_for_the_same_key_win(engine: Engine, tmp_path: Path) -> None:
    companies_csv = write(
        tmp_path,
        "companies.csv",
        """
        name,domain,plan
        Acme,acme.example,pro
        Acme Logistics,www.acme.example,enterprise
        """,
    )
    endusers_csv = write(
        tmp_path,
        "endusers.csv",
        """
        email,name,seats
        kim@acme.example,Kim,5
        KIM@acme.example,Kim Lee,
        """,
    )
    assert counts(import_file(engine, companies_csv, now=NOW)) == (1, 0, 0)
    assert counts(import_file(engine, endusers_csv, now=NOW)) == (1, 0, 0)
    acme = stored_companies(engine)["acme.example"]
    assert (acme["name"], acme["attributes"]) == ("Acme Logistics", {"plan": "enterprise"})
    kim = stored_endusers(engine)["kim@acme.example"]
    assert (kim["name"], kim["attributes"]) == ("Kim Lee", {})


def test_existing_rows_are_read_in_bulk_not_row_by_row(engine: Engine, tmp_path: Path) -> None:
    import_file(engine, EXAMPLES / "companies.csv", now=NOW)
    lines = [f"user{n}@acme-logistics.example,User {n}" for n in range(1200)]
    path = write(tmp_path, "endusers.csv", "\n".join(["email,name", *lines]))
    assert counts(import_file(engine, path, now=NOW)) == (1200, 0, 0)

    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2].lstrip().split(None, 1)[0].upper())

    event.listen(engine, "before_cursor_execute", record)
    try:
        report = import_file(engine, path, now=NOW)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert counts(report) == (0, 0, 1200)
    assert statements.count("SELECT") == 4  # 3 chunks of emails, 1 for the companies


# --- Which company an enduser belongs to -----------------------------------------------------

COMPANIES = """
    name,domain
    Acme Logistics,acme-logistics.example
    Acme Logistics,acme-eu.example
    Bluebird Health,bluebird-health.example
    Solo Consulting,
    """


@pytest.mark.parametrize(
    ("email", "company", "expected"),
    [
        ("kim@bluebird-health.example", "", "bluebird-health.example"),
        ("kim@eu.bluebird-health.example", "", "bluebird-health.example"),
        ("kim@contractor.example", "  bluebird HEALTH ", "bluebird-health.example"),
        ("kim@contractor.example", "Solo Consulting", "Solo Consulting"),
        ("kim@contractor.example", "", None),
        ("kim@acme-eu.example", "Acme Logistics", "acme-eu.example"),
        ("kim@bluebird-health.example", "Solo Consulting", "Solo Consulting"),
    ],
)
def test_enduser_company_by_name_else_by_email_domain(
    engine: Engine, tmp_path: Path, email: str, company: str, expected: str | None
) -> None:
    import_file(engine, write(tmp_path, "companies.csv", COMPANIES), now=NOW)
    path = write(tmp_path, "endusers.csv", f"email,company\n{email},{company}\n")
    assert import_file(engine, path, now=NOW).bad_rows == []
    assert company_of(engine, email) == expected


@pytest.mark.parametrize(
    ("email", "company", "reason"),
    [
        (
            "kim@contractor.example",
            "Acme",
            "company 'Acme' not found: import companies first or fix the name",
        ),
        (
            "kim@contractor.example",
            "Acme Logistics",
            "company 'Acme Logistics' is the name of several companies: rename one, or leave "
            "the cell empty to match by the email's domain",
        ),
    ],
)
def test_enduser_company_that_cannot_be_found_is_a_bad_row(
    engine: Engine, tmp_path: Path, email: str, company: str, reason: str
) -> None:
    import_file(engine, write(tmp_path, "companies.csv", COMPANIES), now=NOW)
    path = write(tmp_path, "endusers.csv", f"email,company\n{email},{company}\n")
    assert import_file(engine, path, now=NOW).bad_rows == [BadRow(2, reason)]
    assert stored_endusers(engine) == {}


def test_a_company_set_by_name_outranks_the_email_domain_later(
    engine: Engine, tmp_path: Path
) -> None:
    import_file(engine, write(tmp_path, "companies.csv", COMPANIES), now=NOW)
    by_name = write(
        tmp_path, "endusers-1.csv", "email,company\nkim@acme-eu.example,Solo Consulting\n"
    )
    without = write(tmp_path, "endusers-2.csv", "email,name\nkim@acme-eu.example,Kim\n")
    import_file(engine, by_name, now=NOW)
    assert counts(import_file(engine, without, now=NOW)) == (0, 1, 0)
    assert company_of(engine, "kim@acme-eu.example") == "Solo Consulting"


# --- Bad rows --------------------------------------------------------------------------------


def test_bad_rows_are_reported_by_line_and_good_rows_are_stored(
    engine: Engine, tmp_path: Path
) -> None:
    import_file(engine, EXAMPLES / "companies.csv", now=NOW)
    path = write(
        tmp_path,
        "endusers.csv",
        '''
        email,name,company,tracking_opt_out,tags
        ok@acme-logistics.example,Ok,,no,
        bob@,Bob,,,
        ,No Email,,,
        carl@acme-logistics.example,Carl,Acme Ltd,,
        dee@acme-logistics.example,Dee,,,"[""a"", ""b"""
        eve@acme-logistics.example,Eve,,maybe,

        fay@acme-logistics.example,"Fay
        Multi-line",,,
        gus@initech.example,Gus,,YES,"[""x""]"
        hal@initech.example,Hal,,,[oops
        ''',
    )
    report = import_file(engine, path, now=NOW)
    email_hint = "write one address like name@company.example"
    assert report.bad_rows == [
        BadRow(3, f"email 'bob@' is not a valid address: {email_hint}"),
        BadRow(4, "email is empty: every enduser needs an email address"),
        BadRow(5, "company 'Acme Ltd' not found: import companies first or fix the name"),
        BadRow(6, """tags '["a", "b"' is not a valid JSON list: write it like ["A", "B"]"""),
        BadRow(7, "tracking_opt_out 'maybe' must be one of true, false, yes, no, 1, 0"),
        BadRow(12, """tags '[oops' is not a valid JSON list: write it like ["A", "B"]"""),
    ]
    assert counts(report) == (3, 0, 0)
    assert report.summary().splitlines()[1:3] == [
        f"line 3: email 'bob@' is not a valid address: {email_hint}",
        "line 4: email is empty: every enduser needs an email address",
    ]

    people = stored_endusers(engine)
    assert sorted(people) == [
        "fay@acme-logistics.example",
        "gus@initech.example",
        "ok@acme-logistics.example",
    ]
    assert people["fay@acme-logistics.example"]["name"] == "Fay\nMulti-line"
    gus = people["gus@initech.example"]
    assert (gus["tracking_opt_out"], gus["attributes"]) == (True, {"tags": ["x"]})


def test_bad_json_records_are_reported_by_record_number(engine: Engine, tmp_path: Path) -> None:
    records = [
        {"email": "ok@example.org", "score": 1.5},
        {"name": "No Email"},
        {"email": 5},
        {"email": "ann@example.org", "name": ["Ann"]},
        {"email": "bea@example.org", "tracking_opt_out": "nope"},
    ]
    path = tmp_path / "people.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    report = import_file(engine, path, now=NOW)
    assert report.bad_rows == [
        BadRow(2, "email is empty: every enduser needs an email address"),
        BadRow(3, "email 5 is not a valid address: write one address like name@company.example"),
        BadRow(4, "name must be text, not a list"),
        BadRow(5, "tracking_opt_out 'nope' must be one of true, false, yes, no, 1, 0"),
    ]
    assert report.summary().splitlines()[1] == (
        "record 2: email is empty: every enduser needs an email address"
    )
    assert stored_endusers(engine)["ok@example.org"]["attributes"] == {"score": 1.5}


# --- Dry runs --------------------------------------------------------------------------------


def test_a_dry_run_reports_the_same_and_writes_nothing(engine: Engine, tmp_path: Path) -> None:
    dry = import_file(engine, EXAMPLES / "companies.csv", dry_run=True, now=NOW)
    assert (counts(dry), dry.dry_run) == ((6, 0, 0), True)
    assert dry.summary().endswith("dry run: nothing was written")
    assert stored_companies(engine) == {}

    import_file(engine, EXAMPLES / "companies.csv", now=NOW)
    before = stored_companies(engine)
    path = write(tmp_path, "companies.csv", "name,domain,plan\nAcme,acme-logistics.example,pro\n")
    dry = import_file(engine, path, dry_run=True, now=NOW)
    assert (counts(dry), dry.bad_rows) == ((0, 1, 0), [])
    assert stored_companies(engine) == before
    real = import_file(engine, path, now=NOW)
    assert counts(real) == counts(dry)
    assert stored_companies(engine) != before


def test_a_dry_run_of_endusers_reports_bad_rows_too(engine: Engine, tmp_path: Path) -> None:
    import_file(engine, EXAMPLES / "companies.csv", now=NOW)
    path = write(tmp_path, "endusers.csv", "email,company\na@x.example,\nb@x.example,Nope\n")
    dry = import_file(engine, path, dry_run=True, now=NOW)
    real = import_file(engine, path, now=NOW)
    assert (counts(dry), dry.bad_rows) == (counts(real), real.bad_rows)
    assert counts(real) == (1, 0, 0)


# --- Files -----------------------------------------------------------------------------------


def test_a_csv_with_a_byte_order_mark(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_bytes("email,name\r\nzoë@example.org,Zoë\r\n".encode("utf-8-sig"))
    assert counts(import_file(engine, path, now=NOW)) == (1, 0, 0)
    assert stored_endusers(engine)["zoë@example.org"]["name"] == "Zoë"


def test_read_records_numbers_lines_as_an_editor_does(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "companies.csv",
        """
        name;domain;products

        "Acme
        Logistics";acme.example;"[""A"",""B""]"
        Globex;globex.example
        """,
    )
    assert read_records(path) == [
        (3, {"name": "Acme\nLogistics", "domain": "acme.example", "products": '["A","B"]'}),
        (5, {"name": "Globex", "domain": "globex.example", "products": ""}),
    ]


@pytest.mark.parametrize(
    ("name", "text", "kind", "missing"),
    [
        ("companies.csv", "domain,plan\nacme.example,pro\n", "companies", "'name' column"),
        ("endusers.csv", "Name,Role\n", "endusers", "'email' column"),
        ("endusers.json", '[{"name": "Kim"}]', "endusers", "'email' field in any record"),
        ("list.csv", "email,role\n", "companies", "'name' column"),
    ],
)
def test_a_missing_required_column_is_a_file_error(
    engine: Engine, tmp_path: Path, name: str, text: str, kind: Kind, missing: str
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(
        ImportFileError, match=re.escape(f"{name} has no {missing}, which {kind} need")
    ):
        import_file(engine, path, kind, now=NOW)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("companies.xlsx", "PK", "cannot import .xlsx; save it as CSV"),
        ("companies", "name", "cannot import files without an extension"),
        ("companies.csv", "", "companies.csv is empty: the first line must name the columns"),
        ("companies.csv", "name,Name\n", "column 'Name' appears twice in the header"),
        (
            "companies.csv",
            "name,domain\nAcme, Inc,acme.example\n",
            "line 2 has 3 cells but the header has 2 columns: put cells that contain the "
            "separator in double quotes",
        ),
        ("companies.csv", "name,,plan\nAcme,x,pro\n", "line 2 has a value in column 2"),
        ("companies.json", '[{"name": "x"},', "not valid JSON: Expecting value at line 1"),
        ("companies.json", '{"name": "x"}', "expected a JSON list of objects"),
        ("companies.json", '[{"name": "x"}, "y"]', "record 2 is a string"),
    ],
)
def test_files_that_cannot_be_read(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(ImportFileError, match=re.escape(message)):
        read_records(write(tmp_path, name, text))


def test_unreadable_files_and_unknown_kinds(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match=r"cannot read .*nowhere\.csv: No such file"):
        read_records(tmp_path / "nowhere.csv")
    (tmp_path / "latin1.csv").write_bytes("name\nCafé\n".encode("latin-1"))
    with pytest.raises(ImportFileError, match=r"latin1\.csv is not UTF-8 text"):
        read_records(tmp_path / "latin1.csv")
    path = write(tmp_path, "companies.csv", "name\nAcme\n")
    with pytest.raises(ImportFileError, match="unknown kind 'people': use companies or endusers"):
        import_file(engine, path, cast(Kind, "people"))


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("companies.csv", "companies"),
        ("2024-Company-List.json", "companies"),
        ("endusers.csv", "endusers"),
        ("crm_users.csv", "endusers"),
        ("Contacts export.csv", "endusers"),
        ("people.json", "endusers"),
    ],
)
def test_detect_kind(name: str, kind: Kind) -> None:
    assert detect_kind(Path("/data") / name) == kind


@pytest.mark.parametrize("name", ["audience.csv", "company-contacts.csv"])
def test_detect_kind_asks_for_kind_when_the_name_does_not_say(name: str) -> None:
    with pytest.raises(ImportFileError, match="pass --kind companies or --kind endusers"):
        detect_kind(Path(name))


# --- Values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("", None),
        ("   ", None),
        ("West Coast", "West Coast"),
        (' ["A", "B"] ', ["A", "B"]),
        ("[]", []),
        ("true", True),
        ("FALSE", False),
        ("42", 42),
        ("-7", -7),
        ("007", "007"),
        ("+49 30 1234", "+49 30 1234"),
        ("1.5", 1.5),
        ("1.50", "1.50"),
        ("1e3", "1e3"),
        ("nan", "nan"),
        ("2024-03-12", "2024-03-12"),
    ],
)
def test_cell_value(text: str, value: Any) -> None:
    assert cell_value(text, "column") == value
    assert type(cell_value(text, "column")) is type(value)


@pytest.mark.parametrize(
    ("value", "domain"),
    [
        ("acme.example", "acme.example"),
        (" ACME.example ", "acme.example"),
        ("https://www.acme.example/about?x=1", "acme.example"),
        ("http://shop.acme.example:8080", "shop.acme.example"),
        ("acme.example.", "acme.example"),
        ("münchen.example", "münchen.example"),
        ("acme", None),
        ("acme .example", None),
        ("bob@acme.example", None),
        ("-acme.example", None),
        ("10.0.0.1", None),
        ("acme..example", None),
    ],
)
def test_normalize_domain(value: str, domain: str | None) -> None:
    if domain is None:
        with pytest.raises(ValueError):
            normalize_domain(value)
    else:
        assert normalize_domain(value) == domain


@pytest.mark.parametrize(
    ("value", "email"),
    [
        ("bob@acme.example", "bob@acme.example"),
        ("  Bob.Smith+news@ACME.example ", "bob.smith+news@acme.example"),
        ("bob@", None),
        ("@acme.example", None),
        ("bob@acme", None),
        ("bob smith@acme.example", None),
        ("bob@@acme.example", None),
        ("bob@acme.example,ann@acme.example", None),
        ("Bob <bob@acme.example>", None),
    ],
)
def test_normalize_email(value: str, email: str | None) -> None:
    if email is None:
        with pytest.raises(ValueError):
            normalize_email(value)
    else:
        assert normalize_email(value) == email


def test_summary() -> None:
    report = ImportReport(
        kind="endusers",
        created=3,
        updated=1,
        unchanged=0,
        bad_rows=[BadRow(7, "email 'bob@' is not a valid address")],
        dry_run=True,
    )
    assert report.summary() == (
        "endusers: 3 created, 1 updated, 0 unchanged, 1 bad row skipped\n"
        "line 7: email 'bob@' is not a valid address\n"
        "dry run: nothing was written"
    )


# --- Hostile values --------------------------------------------------------------------------

NOT_STORABLE = "NaN, Infinity and numbers beyond 1.8e308 cannot be stored"


def audience(engine: Engine, text: str) -> set[str]:
    with engine.connect() as connection:
        return {row.email for row in connection.execute(audience_select(to_sql(parse(text))))}


def test_nan_and_infinity_in_json_are_bad_records_and_filters_still_work(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "people.json"
    path.write_text(
        "["
        + ", ".join(
            [
                '{"email": "ok@example.org", "seats": 5, "tags": [1, "a"]}',
                '{"email": "nan@example.org", "seats": NaN}',
                '{"email": "inf@example.org", "seats": -Infinity}',
                '{"email": "big@example.org", "seats": 1e400}',
                '{"email": "list@example.org", "tags": [1, NaN]}',
                '{"email": "deep@example.org", "a": {"b": [Infinity]}}',
                '{"email": "long@example.org", "seats": 1' + "0" * 5000 + "}",
                '{"email": "nul@example.org", "note": "a\\u0000b"}',
                '{"email": "half@example.org", "note": "\\ud800"}',
                '{"email": "ok2@example.org", "seats": 1' + "0" * 300 + "}",
            ]
        )
        + "]",
        encoding="utf-8",
    )
    report = import_file(engine, path, now=NOW)
    assert report.bad_rows == [
        BadRow(2, f"seats holds NaN: {NOT_STORABLE}; write a number or leave it empty"),
        BadRow(3, f"seats holds -Infinity: {NOT_STORABLE}; write a number or leave it empty"),
        BadRow(4, f"seats holds Infinity: {NOT_STORABLE}; write a number or leave it empty"),
        BadRow(5, f"tags holds NaN: {NOT_STORABLE}; write a number or leave it empty"),
        BadRow(6, f"a holds Infinity: {NOT_STORABLE}; write a number or leave it empty"),
        BadRow(7, f"seats holds Infinity: {NOT_STORABLE}; write a number or leave it empty"),
        BadRow(8, "note holds a NUL character, which cannot be stored: remove it"),
        BadRow(9, "note holds half of a surrogate pair, which is not text: remove it"),
    ]
    assert set(stored_endusers(engine)) == {"ok@example.org", "ok2@example.org"}
    assert audience(engine, "seats > 1") == {"ok@example.org", "ok2@example.org"}
    assert audience(engine, "seats < 1e300") == {"ok@example.org"}
    assert audience(engine, "tags has 1") == {"ok@example.org"}


def test_bad_csv_cells_reject_only_their_row(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "endusers.csv"
    rows = [
        "email,name,tags,seats",
        'ok@example.org,Ok,"[1, ""a""]",5',
        "nan@example.org,Nan,[NaN],",
        'inf@example.org,Inf,"[1, -Infinity]",',
        "big@example.org,Big,[1e999],",
        "text@example.org,Text,,nan",
        "deep@example.org,Deep," + "[" * 33 + "]" * 33 + ",",
        "long@example.org,Long,," + "x" * 10_001,
        "huge@example.org,Huge,,1" + "0" * 400,
    ]
    data = (
        "\n".join(rows).encode() + b"\nbad@example.org,Caf\xe9,,\nok2@example.org,Zo\xc3\xab,,7\n"
    )
    path.write_bytes(data)
    report = import_file(engine, path, now=NOW)
    assert report.bad_rows == [
        BadRow(3, f"tags holds NaN: {NOT_STORABLE}; write a number or leave it empty"),
        BadRow(4, f"tags holds -Infinity: {NOT_STORABLE}; write a number or leave it empty"),
        BadRow(5, f"tags holds Infinity: {NOT_STORABLE}; write a number or leave it empty"),
        BadRow(7, "tags is a list nested more than 32 levels deep"),
        BadRow(8, "seats is 10,001 characters long, more than 10,000: shorten it"),
        BadRow(10, "name is not UTF-8 text (byte 0xe9): save the file as UTF-8"),
    ]
    people = stored_endusers(engine)
    assert people["text@example.org"]["attributes"] == {"seats": "nan"}
    assert people["huge@example.org"]["attributes"] == {"seats": "1" + "0" * 400}
    assert people["ok2@example.org"]["name"] == "Zoë"
    assert audience(engine, "seats > 1") == {"ok@example.org", "ok2@example.org"}
    assert audience(engine, "tags has 1") == {"ok@example.org"}
    assert audience(engine, 'seats = "nan"') == {"text@example.org"}


def test_a_csv_in_another_encoding_is_still_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "endusers.csv"
    path.write_bytes("email,name\na@x.example,Café\nb@x.example,Zoé\n".encode("latin-1"))
    with pytest.raises(ImportFileError, match=r"endusers\.csv is not UTF-8 text \(bad byte at"):
        read_records(path)
    path.write_bytes("email,nåme\na@x.example,Ok\n".encode("latin-1"))
    with pytest.raises(ImportFileError, match="is not UTF-8 text"):
        read_records(path)
    path = tmp_path / "endusers.json"
    path.write_bytes('[{"email": "a@x.example", "name": "Café"}]'.encode("latin-1"))
    with pytest.raises(ImportFileError, match=r"endusers\.json is not UTF-8 text"):
        read_records(path)


def test_deeply_nested_json_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "endusers.json"
    path.write_text('[{"email": "a@x.example", "a":\n ' + "[" * 5000 + "]" * 5000 + "}]")
    with pytest.raises(
        ImportFileError,
        match=re.escape("nested more than 32 levels deep at line 2, column 32: flatten"),
    ):
        read_records(path)
    path.write_text('[{"email": "a@x.example", "a": ' + "[" * 30 + "]" * 30 + "}]")
    assert read_records(path)[0][1]["a"] == [
        [[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]
    ]

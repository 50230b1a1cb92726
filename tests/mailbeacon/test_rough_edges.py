"""What a new user hit first (issue 10): run from a folder of their own, not the repository."""

from __future__ import annotations

import importlib.metadata
import tempfile
from pathlib import Path

import pytest

from mailbeacon.cli import counted, main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ME = ["--as", "you@yourcompany.example"]


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder outside the repository with a config of one user; the data in tmp/data."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text(
        "users:\n  - email: you@yourcompany.example\n    role: admin\n"
    )
    monkeypatch.chdir(home)
    monkeypatch.setenv("MAILBEACON__DATA_DIR", str(tmp_path / "data"))
    return home


def test_a_missing_templates_folder_is_one_line_and_init_creates_it(
    elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cmd", "help", *ME]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"mailbeacon: no templates folder at {elsewhere}/templates: ")
    assert "`mailbeacon init` creates it" in err

    assert main(["init"]) == 0
    folder = elsewhere / "templates"  # where outreach.templates_dir points by default
    assert f"templates: {folder} (created, with the example welcome.md)" in capsys.readouterr().out
    assert main(["cmd", "templates", *ME]) == 0
    output = capsys.readouterr()
    assert "welcome" in output.out and output.err == ""  # the example is a valid template
    assert main(["init"]) == 0  # a second init leaves the folder as it is
    assert capsys.readouterr().out.endswith(f"templates: {folder}\n")
    assert [path.name for path in folder.iterdir()] == ["welcome.md"]


def test_import_with_a_bad_row_exits_1_keeps_the_good_and_names_missing_companies(
    elsewhere: Path,
    db_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAILBEACON__DATABASE__URL", db_url)  # SQLite and PostgreSQL
    people = elsewhere / "endusers.csv"
    people.write_text(
        "email,name,company\n"
        "dana.reyes@acme-logistics.example,Dana,\n"
        "ann@nowhere.example,Ann,\n"
        "bob@nowhere.example,Bob,Nowhere Inc\n"
    )
    assert main(["import", str(EXAMPLES / "companies.csv")]) == 0
    capsys.readouterr()
    assert main(["import", str(people)]) == 1
    out = capsys.readouterr().out
    assert "endusers: 2 created, 0 updated, 0 unchanged, 1 bad row skipped" in out
    assert "line 4: company 'Nowhere Inc' not found" in out
    assert "1 enduser has no company, as no company has the domain of their email" in out
    assert "(ann@nowhere.example)" in out
    assert main(["status"]) == 0
    assert "endusers:  2\n" in capsys.readouterr().out


def test_status_counts_campaigns_jobs_alert_rules_and_mailboxes(
    elsewhere: Path,
    db_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAILBEACON__DATABASE__URL", db_url)  # SQLite and PostgreSQL
    monkeypatch.setenv("MAILBEACON__OUTREACH__TEMPLATES_DIR", str(EXAMPLES / "templates"))
    assert main(["init"]) == 0
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "campaigns: 0\njobs:      0\nalerts:    0 rules\n" in out
    assert "mailboxes: 0\n" in out
    for name in ("companies.csv", "endusers.csv"):
        assert main(["import", str(EXAMPLES / name)]) == 0
    send = 'send webinar to company.region = "EMEA"'
    assert main(["cmd", send, *ME, "--yes", "--no-wait"]) == 0
    assert main(["cmd", "alerts add on reply via email", *ME]) == 0
    capsys.readouterr()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "\ncampaigns: 1 (1 " in out
    assert "\njobs:      1 (1 queued)\n" in out
    assert "\nalerts:    1 rule\n" in out


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"mailbeacon {importlib.metadata.version('mailbeacon')}\n"


def test_demo_keep_leaves_the_folder_it_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["demo", "--keep"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("The demo's folder is kept: ")
    folder = Path(last.split(": ", 1)[1])
    assert folder.parent == tmp_path
    assert any((folder / "Maildir" / ".Sent" / "new").iterdir())


@pytest.mark.parametrize(
    ("number", "noun", "plural", "text"),
    [
        (0, "alert", None, "0 alerts"),
        (1, "alert", None, "1 alert"),
        (2, "email", None, "2 emails"),
        (1, "company", "companies", "1 company"),
        (3, "company", "companies", "3 companies"),
    ],
)
def test_counted(number: int, noun: str, plural: str | None, text: str) -> None:
    assert counted(number, noun, plural) == text

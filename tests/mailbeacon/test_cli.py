from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailbeacon.cli import main
from mailbeacon.demo import run_demo
from store.clock import utcnow
from store.engine import make_engine
from tests.conftest import settings_for
from tests.helpers import journal_hits, sent_email
from tests.tracking.conftest import PERSON
from tracking.classify import Hit, Rules
from tracking.loader import HitLoader, load_all

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_demo_plays_the_whole_loop_offline() -> None:
    lines: list[str] = []
    assert run_demo(lines.append) == 0
    output = "\n".join(lines)
    assert "companies: 6 created" in output
    assert "pixel answers 200, link answers 404" in output
    assert "click:honeypot" in output and "open:apple_mpp" in output
    assert "human: open 50%, click 33%, reply 14% over 7 emails" in output
    assert "raw:   open 83%, click 50%" in output
    assert "recorded: 1 reply, 1 auto-reply, 1 bounce" in output
    assert "2 endusers have not opened campaign #1 (outage)" in output  # Marc bounced
    assert "1 email was sent without that tracking" in output
    assert lines[-1] == "\nThe demo's folder is removed now: `mailbeacon demo --keep` keeps it."
    # The sender hears of the two people who opened (Lee, and Priya through Gmail's proxy) and
    # of Lee's reply; not of the scanner, Apple MPP, the out-of-office answer or the bounce.
    alerts = [line.split(": ", 1)[1] for line in lines if line.startswith("   - to you@")]
    assert [alert.split(" “")[0] for alert in alerts] == [
        "Lee Chen opened",
        "Priya Nair opened",
        "Lee Chen replied to",
    ]


def test_a_bad_config_value_stops_with_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("server:\n  port: lots\n")
    assert main(["--config", str(config), "status"]) == 2
    assert capsys.readouterr().err == (
        "mailbeacon: config: server.port = 'lots': expected a whole number\n"
    )


def test_import_reports_good_and_bad_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILBEACON__DATA_DIR", str(tmp_path))
    assert main(["--config", str(tmp_path / "none.yaml"), "status"]) == 2  # missing file: clear
    assert "cannot read config file" in capsys.readouterr().err
    people = tmp_path / "endusers.csv"
    people.write_text("email,name\nann@a.example,Ann\nnot-an-email,Bob\n")
    assert main(["import", str(EXAMPLES / "companies.csv")]) == 0
    assert main(["import", str(people), "--dry-run"]) == 1  # a bad row: exit 1
    out = capsys.readouterr().out
    assert "line 3" in out and "not-an-email" in out
    assert main(["status"]) == 0
    assert "endusers:  0" in capsys.readouterr().out  # the dry run stored nothing
    assert main(["import", str(people)]) == 1
    assert main(["status"]) == 0
    assert "endusers:  1" in capsys.readouterr().out  # the good row is in


def test_importing_a_file_that_is_not_there_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILBEACON__DATA_DIR", str(tmp_path))
    assert main(["import", str(tmp_path / "endusers.csv")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mailbeacon: import: ") and "Traceback" not in err


def test_the_console_script_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailbeacon.cli", "init"],
        env={"MAILBEACON__DATA_DIR": str(tmp_path), "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "database ready" in result.stdout
    assert (tmp_path / "mailbeacon.db").exists() and (tmp_path / "tracking.key").exists()


def test_an_unreachable_database_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILBEACON__DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MAILBEACON__DATABASE__URL", "postgresql://nobody@127.0.0.1:9/none")
    assert main(["status"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mailbeacon: cannot use the database: ")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cmd_runs_what_slash_beacon_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILBEACON__DATA_DIR", str(tmp_path))
    me = ["--as", "you@yourcompany.example"]  # the shipped config's user
    assert main(["import", str(EXAMPLES / "companies.csv")]) == 0
    assert main(["import", str(EXAMPLES / "endusers.csv")]) == 0
    capsys.readouterr()
    assert main(["cmd", "templates", *me, "--json"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["ok"] and [t["key"] for t in reply["data"]["templates"]][1] == "outage"
    audience = 'company.region = "EMEA"'
    assert main(["cmd", f"send webinar to {audience}", *me]) == 0
    assert "Confirm to send (on the command line: --yes)." in capsys.readouterr().out
    assert not (tmp_path / "Maildir").exists()
    assert main(["cmd", f"send webinar to {audience}", *me, "--yes"]) == 0
    output = capsys.readouterr()
    assert "sent 4 of 4 emails" in output.out  # EMEA: Northwind and Umbrella
    assert "] 4/4  100%" in output.err  # long work shows how far it got
    assert len(list((tmp_path / "Maildir" / ".Sent" / "new").iterdir())) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cmd", "sned", "--as", "you@yourcompany.example"], "`sned` is not a command"),
        (["cmd", "help", "--as", "who@else.example"], "who@else.example is not an internal user"),
        (["cmd", "send outage to role =", "--as", "you@yourcompany.example"], "in the audience"),
        (  # a limit, refused with its message (not a RecursionError)
            [
                "cmd",
                f"send outage to {'(' * 900}role = 'x'{')' * 900}",
                "--as",
                "you@yourcompany.example",
            ],
            "nested more than 32 deep",
        ),
    ],
)
def test_cmd_mistakes_are_clear_and_exit_1(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.setenv("MAILBEACON__DATA_DIR", str(tmp_path))
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_alerts_via_slack_are_taken_once_slack_is_configured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILBEACON__DATA_DIR", str(tmp_path))
    me = ["--as", "you@yourcompany.example"]
    assert main(["cmd", "alerts add on reply via slack", *me]) == 1
    assert "cannot send alerts via slack yet: use `via desktop` or `via email`" in (
        capsys.readouterr().err
    )
    monkeypatch.setenv("MAILBEACON__SLACK__BOT_TOKEN", "xoxb-configured")
    assert main(["cmd", "alerts add on reply via slack", *me]) == 0
    assert capsys.readouterr().out.startswith("Alert #1: when someone replies to one of your")


def test_cmd_no_wait_leaves_the_job_to_the_worker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILBEACON__DATA_DIR", str(tmp_path))
    me = ["--as", "you@yourcompany.example"]
    assert main(["import", str(EXAMPLES / "companies.csv")]) == 0
    assert main(["import", str(EXAMPLES / "endusers.csv")]) == 0
    capsys.readouterr()
    send = 'send webinar to company.region = "EMEA"'
    assert main(["cmd", send, *me, "--yes", "--no-wait", "--json"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["job"]["status"] == "queued" and reply["data"]["emails"] == 4
    assert not (tmp_path / "Maildir").exists()  # nothing sent until a worker runs it
    assert main(["cmd", "jobs", *me]) == 0
    assert capsys.readouterr().out == "#1 send-out of campaign #1: queued\n"
    # `digest now`, waited for: with no worker running, cmd runs its own job, not the other.
    assert main(["cmd", "digest now", *me]) == 0
    out = capsys.readouterr().out
    assert "Sent to you@yourcompany.example:\nYour mailbeacon digest for" in out
    assert main(["cmd", "jobs", *me]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith("#2 digest sent now: done: Sent to you@yourcompany.example")
    assert listed[1] == "#1 send-out of campaign #1: queued"


def test_status_shows_the_hits_waiting_in_the_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILBEACON__DATA_DIR", str(tmp_path))
    assert main(["init"]) == 0
    settings, _ = settings_for(tmp_path)
    engine = make_engine(settings.database)
    email_id = sent_email(engine, "status")
    first = Hit("open", datetime(2026, 12, 7, 9, 30, tzinfo=UTC), user_agent=PERSON)
    folder = Path(settings.tracking.journal_dir)
    journal_hits(folder, [(email_id, first), (email_id, Hit("open", utcnow(), user_agent=PERSON))])
    capsys.readouterr()
    assert main(["status"]) == 0
    assert (
        f"journal:   {folder}: 2 hits waiting in 1 file, the oldest from 2026-12-07 09:30:00 UTC"
        in capsys.readouterr().out
    )
    loader = HitLoader(engine, folder, Rules())
    load_all(loader)
    loader.write_state()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert f"journal:   {folder}: nothing waiting" in out and "events:    2" in out
    engine.dispose()

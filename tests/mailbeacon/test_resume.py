"""A send-out whose sender is killed is finished by the next `serve`: each enduser gets exactly
one email, and the same send again is refused without `again`. Real processes, both databases."""

from __future__ import annotations

import mailbox
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import Engine, func, select

from mailbeacon.serve import free_port
from store.schema import campaigns, emails

ROOT = Path(__file__).resolve().parents[2]
ME = "you@yourcompany.example"  # the shipped config's admin
PEOPLE = 300
SEND = "send webinar to role = 'tester'"


def campaign(engine: Engine) -> tuple[str, int] | None:
    with engine.connect() as connection:
        row = connection.execute(select(campaigns.c.status, campaigns.c.sent_count)).first()
    return None if row is None else (row.status, row.sent_count)


def in_flight(engine: Engine) -> int:
    """Emails marked as being sent right now."""
    with engine.connect() as connection:
        query = select(func.count()).select_from(emails).where(emails.c.status == "sending")
        return int(connection.scalar(query) or 0)


def delivered(folder: Path) -> list[str]:
    """What the Maildir mailbox has sent so far, by recipient."""
    sent = folder / "Maildir" / ".Sent"
    if not sent.exists():
        return []
    return [
        str(message["To"]) for message in mailbox.Maildir(folder / "Maildir").get_folder("Sent")
    ]


def wait_for(check: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not callable(check) or not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.002)


def test_a_killed_send_out_is_finished_by_serve_exactly_once(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "MAILBEACON_CONFIG": str(ROOT / "config.yaml"),
        "MAILBEACON__DATA_DIR": str(tmp_path),
        "MAILBEACON__DATABASE__URL": db_url,
        "MAILBEACON__SERVER__PORT": str(free_port()),
        "MAILBEACON__TRACKING__REPLY_SYNC_SECONDS": "0",
        "MAILBEACON__NOTIFIER__DISPATCH_SECONDS": "0",
        "MAILBEACON__OUTREACH__TEMPLATES_DIR": str(ROOT / "examples" / "templates"),
    }
    people = tmp_path / "people.csv"
    people.write_text(
        "email,name,role\n"
        + "".join(f"p{i}@example.org,Person {i:03d},tester\n" for i in range(PEOPLE))
    )

    def mailbeacon(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "mailbeacon.cli", *args],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finished(*args: str) -> subprocess.CompletedProcess[str]:
        process = mailbeacon(*args)
        out, err = process.communicate(timeout=120)
        return subprocess.CompletedProcess(args, process.returncode, out, err)

    assert finished("import", str(people), "--kind", "endusers").returncode == 0
    sender = mailbeacon("cmd", SEND, "--as", ME, "--yes")
    # The sender is stopped where a crash hurts most: a chunk handed to the mailbox, not yet
    # recorded. Holding the campaign's row makes it wait right there (it records a chunk in
    # one transaction that updates that row), and there it is killed.
    wait_for(lambda: in_flight(engine) > 0, 60, "a chunk marked as being sent")
    with engine.connect() as holder:
        holding = holder.begin()
        recorded = holder.execute(select(campaigns.c.sent_count).with_for_update()).scalar_one()
        marked = holder.scalar(
            select(func.count()).select_from(emails).where(emails.c.status == "sending")
        )
        wait_for(lambda: len(delivered(tmp_path)) == recorded + marked, 30, "the chunk")
        sender.send_signal(signal.SIGKILL)
        sender.communicate()
        holding.rollback()
    assert recorded < PEOPLE and campaign(engine) == ("sending", recorded)
    assert len(delivered(tmp_path)) == recorded + marked  # these went out; nothing says so

    server = mailbeacon("serve")
    try:
        wait_for(lambda: campaign(engine) == ("sent", PEOPLE), 60, "serve to finish it")
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    assert Counter(delivered(tmp_path)) == Counter({f"p{i}@example.org": 1 for i in range(PEOPLE)})

    again = finished("cmd", SEND, "--as", ME, "--yes")
    assert again.returncode == 1
    assert (
        f"you already sent `webinar` to this audience: campaign #1 is sent, {PEOPLE}/{PEOPLE} "
        "done. To send it once more anyway, add `again` at the end."
    ) in again.stderr
    preview = finished("cmd", f"{SEND} again", "--as", ME)
    assert preview.returncode == 0 and "Confirm to send" in preview.stdout

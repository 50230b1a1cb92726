"""Benchmark: a send-out of 10,000 individual emails vs a bare render-and-write loop.

    .venv/bin/python bench/send.py [--emails 10000] [--template webinar]

mailbeacon: `/beacon send <template> to <everyone>` confirmed, through the command layer: the
audience is resolved, every email rendered, instrumented, planned in the outbox, then sent one
by one to a Maildir with its status recorded before and after. The bare loop, in the same run:
Jinja2 renders the same template for the same endusers and writes each message to a Maildir.
Judged by: at least 1,000 emails/s, and no more than 3x the bare loop's time per email.
"""

from __future__ import annotations

import argparse
import mailbox
import sys
import tempfile
import time
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from jinja2 import Environment
from sqlalchemy import select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.jobs import get_job, run_due  # noqa: E402
from bot.registry import run_text  # noqa: E402
from bot.users import UserSettings, find_user, sync_config_users  # noqa: E402
from mailbeacon.context import command_context, job_contexts  # noqa: E402
from mailbeacon.settings import load_settings, with_generated_keys  # noqa: E402
from outreach.templates import load_template, sync_templates  # noqa: E402
from store.engine import make_engine  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from store.schema import companies, endusers  # noqa: E402

SENDER = "bench@us.example"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=10_000)
    parser.add_argument("--template", default="webinar")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailbeacon-bench-") as folder:
        ours = _mailbeacon(Path(folder), args.emails, args.template)
        bare = _bare_loop(Path(folder), args.emails, args.template)
    per_email_ours, per_email_bare = ours / args.emails, bare / args.emails
    print(f"\n{'':24} {'emails/s':>9} {'ms/email':>9}")
    print(f"{'mailbeacon send-out':24} {args.emails / ours:9.0f} {per_email_ours * 1000:9.3f}")
    print(f"{'bare render + write':24} {args.emails / bare:9.0f} {per_email_bare * 1000:9.3f}")
    ratio = per_email_ours / per_email_bare
    print(
        f"\njudged: {args.emails / ours:.0f} emails/s (target >= 1,000), "
        f"{ratio:.1f}x the bare loop's time per email (target <= 3x)"
    )
    return 0


def _mailbeacon(folder: Path, count: int, template: str) -> float:
    settings = with_generated_keys(
        load_settings(None, {"MAILBEACON__DATA_DIR": str(folder / "mailbeacon")})
    )
    engine = make_engine(settings.database)
    upgrade(engine)
    with engine.begin() as connection:
        company = connection.execute(
            companies.insert()
            .values(name="Bench Co", domain="bench.example", attributes={"region": "EMEA"})
            .returning(companies.c.id)
        ).scalar_one()
        connection.execute(
            endusers.insert(),
            [
                {
                    "email": f"user{i}@bench.example",
                    "name": f"User {i}",
                    "company_id": company,
                    "attributes": {"seats": i % 50},
                }
                for i in range(count)
            ],
        )
        sync_config_users(connection, [UserSettings(SENDER, "Bench", role="admin")])
        user = find_user(connection, SENDER)
    assert user is not None
    sync_templates(engine, ROOT / "examples" / "templates")
    settings = replace(settings, outreach=replace(settings.outreach, admin_send_threshold=count))
    context = command_context(settings, engine, user)
    started = time.perf_counter()
    # The command plans the send-out and answers; its job, run here, sends it.
    reply = run_text(f'send {template} to company.region = "EMEA"', context, confirmed=True)
    assert reply.job is not None
    run_due(engine, "bench", job_contexts(settings, engine), only=reply.job)
    elapsed = time.perf_counter() - started
    with engine.connect() as connection:
        print(f"mailbeacon: {get_job(connection, reply.job).result['text']}")
    with engine.connect() as connection:
        assert len(connection.execute(select(endusers.c.id)).all()) == count
    assert (
        sum(1 for _ in mailbox.Maildir(folder / "mailbeacon" / "Maildir").get_folder("Sent"))
        == count
    )
    engine.dispose()
    return elapsed


def _bare_loop(folder: Path, count: int, template: str) -> float:
    source = load_template(next((ROOT / "examples" / "templates").glob(f"{template}.*")))
    environment = Environment(autoescape=True)
    subject, body = environment.from_string(source.subject), environment.from_string(source.body)
    people: list[dict[str, Any]] = [
        {
            "enduser": {"name": f"User {i}", "email": f"user{i}@bench.example", "seats": i % 50},
            "company": {"name": "Bench Co"},
            "sender": {"name": "Bench"},
            "campaign": {"name": template},
        }
        for i in range(count)
    ]
    box = mailbox.Maildir(folder / "bare-maildir", create=True)
    started = time.perf_counter()
    for context in people:
        message = EmailMessage()
        message["From"] = SENDER
        message["To"] = context["enduser"]["email"]
        message["Subject"] = subject.render(context)
        message.set_content(body.render(context))
        box.add(message)
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())

"""`mailbeacon demo`: the whole loop offline, in a temporary folder, printing what happened.

Imports the examples, sends the outage template to seven endusers with `/beacon send` (a
campaign through the Maildir mailbox) and sets up two alerts, starts the tracking server on a
free port, plays the recipients (people, Apple Mail Privacy Protection, a link scanner, a forger)
and their answers, prints each email's engagement row and the human and raw rates, and the
alerts the sender gets. The folder is removed at the end unless `keep`.
"""

from __future__ import annotations

import mailbox
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.header import decode_header, make_header
from pathlib import Path

import httpx
from sqlalchemy import Engine, select

from bot.context import Context
from bot.jobs import get_job, run_due
from bot.registry import run_text
from bot.users import UserSettings, find_user, sync_config_users
from mailbeacon.cli import counted
from mailbeacon.context import command_context, job_contexts
from mailbeacon.serve import free_port, running_in_thread, uvicorn_config
from mailbeacon.settings import Settings, load_settings, with_generated_keys
from notifier.channels import EmailChannel
from notifier.dispatcher import SETTLE, deliver, dispatch
from outreach.importer import import_file
from outreach.maildir import MaildirMailbox
from outreach.templates import sync_templates
from store.clock import utcnow
from store.engine import make_engine
from store.migrate import upgrade
from store.schema import emails, endusers, engagements, events, links
from tracking.analytics import Rates, average_rates
from tracking.loader import HitLoader, load_all
from tracking.replies import sync_inbox
from tracking.settings import tracking_rules
from tracking.tokens import TokenSigner

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SENDER = "you@yourcompany.example"
FOLDER_PREFIX = "mailbeacon-demo-"
MACHINE_AFTER_SEND_SECONDS = 2

TEMPLATE = "outage"
ALERTS = ("alerts add on open first only via email", "alerts add on reply via email")

THUNDERBIRD = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0 Safari/537.36"
)
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)


@dataclass(frozen=True)
class Sent:
    email_id: int
    to: str
    open_url: str
    link_urls: list[str]  # index 0: the honeypot


def run_demo(out: Callable[[str], None] = print, *, keep: bool = False) -> int:
    if keep:
        folder = tempfile.mkdtemp(prefix=FOLDER_PREFIX)
        _run(folder, out)
        out(f"\nThe demo's folder is kept: {folder}")
        return 0
    with tempfile.TemporaryDirectory(prefix=FOLDER_PREFIX) as folder:
        _run(folder, out)
    out("\nThe demo's folder is removed now: `mailbeacon demo --keep` keeps it.")
    return 0


def _run(folder: str, out: Callable[[str], None]) -> None:
    port = free_port()
    settings = with_generated_keys(
        load_settings(
            None,
            {
                "MAILBEACON__DATA_DIR": folder,
                "MAILBEACON__SERVER__PORT": str(port),
                "MAILBEACON__TRACKING__REPLY_SYNC_SECONDS": "0",  # the demo syncs itself
                "MAILBEACON__TRACKING__MACHINE_AFTER_SEND_SECONDS": str(MACHINE_AFTER_SEND_SECONDS),
            },
        )
    )
    engine = make_engine(settings.database)
    upgrade(engine)
    out(f"mailbeacon demo in {folder} (SQLite, Maildir, no accounts)\n")
    out("1. Importing the example audience")
    for name in ("companies.csv", "endusers.csv"):
        report = import_file(engine, EXAMPLES / name)
        out("   " + report.summary().replace("\n", "\n   "))
    out(f"\n2. Sending the '{TEMPLATE}' template to seven endusers")
    sent = _send(engine, settings, out)
    out(f"   the emails are in {settings.outreach.maildir}/.Sent")
    for text in ALERTS:
        out(f"   /beacon {text}")
        reply = run_text(text, _context(engine, settings))
        out(f"   {reply.text}")
    config = uvicorn_config(settings, engine, "127.0.0.1", port, log_level="warning")
    with running_in_thread(config):
        out(f"\n3. Tracking server on {settings.tracking.base_url}; playing the recipients")
        _play(sent, out)
    # The server's loader stores the hits behind its answers; this waits for it (its lock),
    # and loads whatever it left.
    tracking = settings.tracking
    load_all(HitLoader(engine, Path(tracking.journal_dir), tracking_rules(tracking)))
    out("\n4. Answers arrive in the Maildir inbox, and a reply sync reads them")
    _answers(engine, settings, sent, out)
    _report(engine, sent, out)
    out("\n7. /beacon nonopeners outage")
    reply = run_text(f"nonopeners {TEMPLATE}", _context(engine, settings))
    out("   " + reply.text.replace("\n", "\n   "))
    _alerts(engine, settings, out)
    engine.dispose()


def _alerts(engine: Engine, settings: Settings, out: Callable[[str], None]) -> None:
    out("\n8. Alerts, once every hit is 10 s old and can no longer turn out to be a machine")
    dispatch(engine, clock=lambda: utcnow() + SETTLE)
    folder = Path(settings.outreach.maildir)
    channel = EmailChannel(lambda recipient: MaildirMailbox(folder, recipient.email))
    report = deliver(engine, {"email": channel})
    alerts = {}  # by delivery, in the order they were dispatched
    for message in mailbox.Maildir(folder).get_folder("Sent"):
        if (key := str(message["Message-ID"])).startswith("<alert."):
            subject = str(make_header(decode_header(str(message["Subject"]))))
            alerts[int(key.split(".")[1].split("@")[0])] = f"to {message['To']}: {subject}"
    for _, line in sorted(alerts.items()):
        out(f"   - {line}")
    out(f"   {counted(report.delivered, 'alert')} by email, in {folder}/.Sent")


def _context(engine: Engine, settings: Settings) -> Context:
    """The demo's sender, as the command layer sees them."""
    with engine.connect() as connection:
        sender = find_user(connection, SENDER)
    assert sender is not None
    return command_context(settings, engine, sender)


def _answers(
    engine: Engine, settings: Settings, sent: list[Sent], out: Callable[[str], None]
) -> None:
    with engine.connect() as connection:
        rows = connection.execute(select(emails.c.id, emails.c.message_id))
        message_ids = {row.id: row.message_id for row in rows}
    person, away, gone = sent[2], sent[3], sent[5]
    inbox = mailbox.Maildir(Path(settings.outreach.maildir))
    out(f"   - {person.to} replies; {away.to} is out of office; {gone.to} bounces")
    for text in (
        f"From: {person.to}\nTo: {SENDER}\nSubject: Re: our incident\n"
        "Message-ID: <demo-reply@customer.example>\n"
        f"In-Reply-To: {message_ids[person.email_id]}\n\nThanks for the heads-up, retrying now.\n",
        f"From: {away.to}\nTo: {SENDER}\nSubject: Automatic reply: our incident\n"
        f"Message-ID: <demo-oof@customer.example>\nAuto-Submitted: auto-replied\n"
        f"In-Reply-To: {message_ids[away.email_id]}\n\nI am away until Monday.\n",
        f"From: MAILER-DAEMON@mx.northwind.example\nTo: {SENDER}\n"
        "Subject: Undelivered Mail Returned to Sender\nMessage-ID: <demo-dsn@mx.example>\n"
        "MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; "
        'boundary="B"\n\n--B\nContent-Type: text/plain\n\nNot delivered.\n\n--B\n'
        "Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.northwind.example\n\n"
        f"Final-Recipient: rfc822; {gone.to}\nAction: failed\nStatus: 5.1.1\n\n--B\n"
        f"Content-Type: text/rfc822-headers\n\nMessage-ID: {message_ids[gone.email_id]}\n\n--B--\n",
    ):
        inbox.add(text.encode())
    box = MaildirMailbox(Path(settings.outreach.maildir), SENDER)
    report = sync_inbox(engine, box, internal_domains=["yourcompany.example"])
    out(f"   sync: {report.summary()}")


def _send(engine: Engine, settings: Settings, out: Callable[[str], None]) -> list[Sent]:
    """`/beacon send outage to …`, through the command layer like any user's send."""
    with engine.begin() as connection:
        sync_config_users(connection, [UserSettings(SENDER, "Alex from Support", role="admin")])
        ordered = select(endusers.c.email).order_by(endusers.c.id)
        # Six who will play their parts, and one who opted out of tracking (if any did).
        addresses = [
            *connection.scalars(ordered.where(~endusers.c.tracking_opt_out).limit(6)),
            *connection.scalars(ordered.where(endusers.c.tracking_opt_out).limit(1)),
        ]
    sync_templates(engine, EXAMPLES / "templates")
    signer = TokenSigner(settings.tracking.signing_keys)
    text = f"send {TEMPLATE} to {', '.join(addresses)}"
    out(f"   /beacon {text[:60]}…")
    reply = run_text(text, _context(engine, settings), confirmed=True)
    out("   " + reply.text)
    # What the worker does with the job the send started.
    run_due(engine, "demo", job_contexts(settings, engine))
    assert reply.job is not None
    with engine.connect() as connection:
        out("   " + get_job(connection, reply.job).result["text"])
    base = settings.tracking.base_url
    with engine.connect() as connection:
        rows = connection.execute(select(emails.c.id, emails.c.to_addrs).order_by(emails.c.id))
        link_rows = connection.execute(select(links.c.email_id, links.c.idx).order_by(links.c.idx))
        indexes: dict[int, list[int]] = {}
        for link in link_rows:
            indexes.setdefault(link.email_id, []).append(link.idx)
        sent = [
            Sent(
                email_id=row.id,
                to=row.to_addrs[0],
                open_url=f"{base}/t/o/{signer.open_token(row.id)}.gif",
                link_urls=[
                    f"{base}/t/c/{signer.click_token(row.id, i)}" for i in indexes.get(row.id, [])
                ],
            )
            for row in rows
        ]
    return sorted(sent, key=lambda email: addresses.index(email.to))  # the parts, in order


def _play(sent: list[Sent], out: Callable[[str], None]) -> None:
    scanned, apple, person, gmail, clicker = sent[:5]
    with httpx.Client(timeout=10) as client:

        def hit(url: str, agent: str, ip: str, method: str = "GET") -> int:
            headers = {"User-Agent": agent, "X-Forwarded-For": ip}
            return client.request(method, url, headers=headers).status_code

        out(f"   - a link scanner at {scanned.to}'s mail gateway follows every link in a second")
        for url in scanned.link_urls:
            hit(url, CHROME, "203.0.113.50", "HEAD")
            hit(url, CHROME, "203.0.113.50")
        out(f"   - Apple Mail Privacy Protection prefetches the pixel for {apple.to}")
        hit(apple.open_url, "Mozilla/5.0", "17.58.0.1")
        forged = hit(scanned.open_url[:-12] + "AAAAAAAA.gif", CHROME, "192.0.2.66")
        missing = hit(scanned.link_urls[1][:-8] + "AAAAAAAA", CHROME, "192.0.2.66")
        out(f"   - a forger tries made-up tokens: pixel answers {forged}, link answers {missing}")
        time.sleep(MACHINE_AFTER_SEND_SECONDS + 0.2)
        out(f"   - {person.to} opens it in Thunderbird, then clicks the incident report")
        hit(person.open_url, THUNDERBIRD, "198.51.100.7")
        hit(person.link_urls[1], THUNDERBIRD, "198.51.100.7")
        out(f"   - {gmail.to} opens it in Gmail (images come through Google's proxy)")
        hit(gmail.open_url, GMAIL_PROXY, "66.249.84.1")
        out(f"   - {clicker.to} has images off but clicks 'how to retry'")
        hit(clicker.link_urls[2], CHROME, "198.51.100.99")


def _report(engine: Engine, sent: list[Sent], out: Callable[[str], None]) -> None:
    def show(value: int | None) -> str:
        return "null" if value is None else str(value)

    with engine.connect() as connection:
        rows = {
            row.email_id: row
            for row in connection.execute(
                select(engagements).where(engagements.c.email_id.in_([s.email_id for s in sent]))
            )
        }
        reasons: dict[int, list[str]] = {}
        for event in connection.execute(select(events).order_by(events.c.id)):
            label = (
                f"{event.kind}:{event.machine_reason or 'human'}"
                if event.kind in ("open", "click")
                else event.kind
            )
            reasons.setdefault(event.email_id, []).append(label)
        human, raw = average_rates(connection), average_rates(connection, raw=True)

    out("\n5. Engagement rows (human-only rates; raw counts machines too)")
    out(f"   {'to':34} {'open':>5} {'click':>5} {'reply':>5} {'raw open':>8}  events")
    for s in sent:
        row = rows[s.email_id]
        out(
            f"   {s.to:34} {show(row.open_rate):>5} {show(row.click_rate):>5} "
            f"{show(row.reply_rate):>5} {show(row.open_rate_raw):>8}  "
            + (", ".join(_summarize(reasons.get(s.email_id, []))) or "-")
        )
    out("\n6. Rates over all emails")
    out("   human: " + _rates(human))
    out("   raw:   " + _rates(raw))


def _summarize(labels: list[str]) -> list[str]:
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return [f"{n} {label}" for label, n in counts.items()]


def _rates(rates: Rates) -> str:
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0f}%"

    return (
        f"open {pct(rates.open_rate)}, click {pct(rates.click_rate)}, "
        f"reply {pct(rates.reply_rate)} over {counted(rates.emails, 'email')}"
    )

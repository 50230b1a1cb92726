"""Benchmark: alert latency, from a person's open (the pixel's 200 answer) to the alert
delivered, by email and by Slack.

    .venv/bin/python bench/notify.py [--emails 40] [--database sqlite|postgresql]
        [--dispatch-seconds S]

Two internal users each sent `--emails` emails an hour ago, one per enduser, and each has one
alert rule, added through `/beacon` as a user would: `alerts add on open first only via email`
for one, `… via slack` for the other (linked to a Slack member). Starts `mailbeacon serve` (its
own process, role all: it runs the alert jobs, notifier.dispatch_seconds at its default unless
`--dispatch-seconds` is given) with Slack pointed at the fake Slack Web API of
tests/fakes/slack.py and no mailbox connected, so alert emails go to the embedded Maildir's
.Sent folder. Opens every email once, in random order, one every 100-250 ms, as Thunderbird,
noting when each 200 came. An observer process runs the fake Slack (noting each
chat.postMessage as it comes) and looks into the Maildir every 20 ms (noting each new message);
each alert is matched to its open by the enduser's address it names. Every time is read from
time.monotonic (CLOCK_MONOTONIC, one clock for all processes). Prints count, min, p50, p99 and
max of the latency per channel.
Judged by: p50 <= 11 s on each channel, within 1 s of the 10 s an event waits before it is
dispatched (notifier/dispatcher.py SETTLE). Exits 1 only when something is broken: an open not
answered 200, an alert still missing 60 s after the last open, one alert twice, or one about
an email nobody opened.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from email import policy
from email.parser import BytesParser
from multiprocessing.connection import Connection
from pathlib import Path

import httpx
from sqlalchemy import Engine, func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.tracking import AGENT, DEFAULT_PG, _database, _server  # noqa: E402
from bot.registry import run_text  # noqa: E402
from bot.users import find_user, sync_config_users  # noqa: E402
from mailbeacon.context import command_context  # noqa: E402
from mailbeacon.settings import Settings, load_settings, with_generated_keys  # noqa: E402
from notifier.dispatcher import SETTLE  # noqa: E402
from outreach.emails import Draft, create_emails, mark_sent_many  # noqa: E402
from store.clock import utcnow  # noqa: E402
from store.engine import make_engine  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from store.schema import deliveries, endusers  # noqa: E402
from tests.fakes.slack import BOT_TOKEN, SIGNING_SECRET, FakeSlack, Json  # noqa: E402
from tracking.instrument import TrackingFlags  # noqa: E402
from tracking.tokens import TokenSigner  # noqa: E402

# Who is alerted, how: (channel, the user's address, their Slack member id or "").
USERS = (("email", "mailer@us.example", ""), ("slack", "slacker@us.example", "UNOTIFY"))
ADDRESS = re.compile(r"[\w.+-]+@readers\.example")  # an enduser's, as alerts name them
TARGET_P50 = SETTLE.total_seconds() + 1.0
MAILDIR_POLL_SECONDS = 0.02
WAIT_AFTER_LAST_OPEN = 60.0
GAP_SECONDS = (0.10, 0.25)  # between two opens, drawn at random
Key = tuple[str, str | None]  # an alert's channel and the enduser's address it names


@dataclass(frozen=True)
class Watched:
    """A sent email whose opening its sender is alerted of."""

    channel: str
    address: str  # its enduser's
    pixel: str  # the path of its open pixel


@dataclass(frozen=True)
class Opened:
    watched: Watched
    answered: float  # time.monotonic() when the pixel's answer came
    status: int


@dataclass(frozen=True)
class Arrival:
    """An alert as it reached its channel."""

    channel: str
    address: str | None  # the enduser's address it names
    at: float  # time.monotonic() when it came


@dataclass
class TimedSlack(FakeSlack):
    """The fake Slack Web API, noting when each alert (a chat.postMessage) comes."""

    arrivals: list[Arrival] = field(default_factory=list)

    def answer(self, method: str, arguments: Json, authorization: str) -> tuple[int, Json, Json]:
        at = time.monotonic()
        status, answer, headers = super().answer(method, arguments, authorization)
        if method == "chat.postMessage" and answer.get("ok"):
            self.arrivals.append(Arrival("slack", _named(str(arguments.get("text", ""))), at))
        return status, answer, headers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=40, help="emails per user")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--postgres", default=os.environ.get("MAILBEACON_TEST_DATABASE_URL", DEFAULT_PG)
    )
    parser.add_argument("--dispatch-seconds", type=float, help="default: the server's own")
    parser.add_argument("--seed", type=int, help="for the order of the opens and the gaps")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="mailbeacon-bench-") as folder, ExitStack() as stack:
        db_url = (
            f"sqlite:///{folder}/bench.db"
            if args.database == "sqlite"
            else stack.enter_context(_database(args.postgres))
        )
        maildir = Path(folder) / "Maildir"
        pipe = stack.enter_context(_observer(maildir))
        env = _environment(folder, db_url, maildir, pipe.recv(), args.dispatch_seconds)
        settings = with_generated_keys(load_settings(None, env))
        every = settings.notifier.dispatch_seconds
        print(
            f"{args.emails} emails for each of {len(USERS)} users, {args.database}, "
            + (f"alerts dispatched every {every:g} s" if every > 0 else "alerts OFF")
            + f", events settle {SETTLE.total_seconds():g} s, {os.cpu_count()} cores",
            flush=True,
        )
        engine = make_engine(settings.database)
        stack.callback(engine.dispose)
        watched = _seed(settings, engine, args.emails)
        with _server(["-m", "mailbeacon.cli", "serve"], env) as port:
            opened = _open_all(f"http://127.0.0.1:{port}", watched, rng)
            expected: set[Key] = {(o.watched.channel, o.watched.address) for o in opened}
            last = max(o.answered for o in opened)
            arrivals = _wait_for(pipe, expected, last + WAIT_AFTER_LAST_OPEN)
        return _report(opened, arrivals, _delivery_states(engine))


def _environment(
    folder: str, db_url: str, maildir: Path, slack_api: str, dispatch_seconds: float | None
) -> dict[str, str]:
    users = ", ".join(
        f"{{email: {address}, name: {channel.title()} Bench, slack_user_id: '{member}'}}"
        for channel, address, member in USERS
    )
    env = {
        "MAILBEACON__DATA_DIR": folder,
        "MAILBEACON__DATABASE__URL": db_url,
        "MAILBEACON__USERS": f"[{users}]",
        "MAILBEACON__OUTREACH__MAILDIR": str(maildir),
        "MAILBEACON__TRACKING__BASE_URL": "https://beacon.bench.example",
        "MAILBEACON__TRACKING__REPLY_SYNC_SECONDS": "0",  # alerts alone
        "MAILBEACON__SLACK__BOT_TOKEN": BOT_TOKEN,
        "MAILBEACON__SLACK__SIGNING_SECRET": SIGNING_SECRET,
        "MAILBEACON__SLACK__API_URL": slack_api,
    }
    if dispatch_seconds is not None:
        env["MAILBEACON__NOTIFIER__DISPATCH_SECONDS"] = f"{dispatch_seconds:g}"
    return env


@contextmanager
def _observer(maildir: Path) -> Iterator[Connection]:
    """The observer process, running until the block ends: a pipe to it, on which it first
    sends the fake Slack's URL."""
    pipe, theirs = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_observe, args=(theirs, str(maildir)), name="bench-observer"
    )
    process.start()
    try:
        yield pipe
    finally:
        pipe.send("stop")
        process.join(timeout=10)
        if process.is_alive():
            process.terminate()


def _observe(pipe: Connection, maildir: str) -> None:
    """In its own process, so that its threads do not delay the opens' readings: the fake
    Slack, and a look into the Maildir's sent folder every MAILDIR_POLL_SECONDS. Sends the fake's
    URL, then every arrival so far each time it is asked."""
    slack = TimedSlack()
    arrivals = slack.arrivals  # the fake's threads add Slack's, this loop the emails
    sent = Path(maildir) / ".Sent" / "new"  # Maildir delivery renames a whole message in here
    seen: set[str] = set()
    with slack:
        pipe.send(slack.url)
        while True:
            if pipe.poll(MAILDIR_POLL_SECONDS):
                if pipe.recv() != "arrivals":
                    return
                pipe.send(list(arrivals))
            at = time.monotonic()
            for name in _new_files(sent, seen):
                arrivals.append(Arrival("email", _named(_plain_text(sent / name)), at))


def _new_files(folder: Path, seen: set[str]) -> list[str]:
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.name not in seen]
    except FileNotFoundError:  # made at the first alert
        return []
    seen.update(names)
    return names


def _plain_text(path: Path) -> str:
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    body = message.get_body(("plain",))
    return "" if body is None else str(body.get_content())


def _named(text: str) -> str | None:
    found = ADDRESS.search(text)
    return None if found is None else found.group()


def _seed(settings: Settings, engine: Engine, count: int) -> list[Watched]:
    """The users from config, each with their alert rule (`/beacon alerts add`) and `count`
    emails sent an hour ago, each to an enduser of its own."""
    upgrade(engine)
    with engine.begin() as connection:
        sync_config_users(connection, settings.users)
    watched = []
    for channel, address, _ in USERS:
        with engine.connect() as connection:
            user = find_user(connection, address)
        assert user is not None
        context = command_context(settings, engine, user)
        run_text(f"alerts add on open first only via {channel}", context)
        watched += _sent_emails(settings, engine, user.id, channel, count)
    return watched


def _sent_emails(
    settings: Settings, engine: Engine, sender: int, channel: str, count: int
) -> list[Watched]:
    signer = TokenSigner(settings.tracking.signing_keys)
    addresses = [f"{channel}-reader-{i}@readers.example" for i in range(count)]
    html = "<html><body><p>Hello, how are things?</p></body></html>"
    with engine.begin() as connection:
        reader_ids = connection.scalars(
            endusers.insert().returning(endusers.c.id, sort_by_parameter_order=True),
            [{"email": a, "name": f"Reader {channel} {i}"} for i, a in enumerate(addresses)],
        ).all()
        drafts = [
            Draft(
                f"bench-notify-{channel}-{i}",
                [address],
                f"Checking in ({i})",
                html,
                "Hello, how are things?",
                TrackingFlags(opens=True, clicks=False),
                enduser_id=reader,
                sender_user_id=sender,
            )
            for i, (address, reader) in enumerate(zip(addresses, reader_ids, strict=True))
        ]
        created = create_emails(connection, drafts, signer, settings.tracking)
        sent_at = utcnow() - timedelta(hours=1)  # long past the machine-after-send rule
        mark_sent_many(
            connection,
            [
                {"email_id": email_id, "message_id": f"<{email_id}@bench>", "sent_at": sent_at}
                for email_id, _ in created
            ],
        )
    return [
        Watched(channel, address, f"/t/o/{signer.open_token(email_id)}.gif")
        for address, (email_id, _) in zip(addresses, created, strict=True)
    ]


def _open_all(base: str, watched: list[Watched], rng: random.Random) -> list[Opened]:
    """Each email opened once, in random order, with a random gap after each open."""
    opened = []
    with httpx.Client(base_url=base, headers={"User-Agent": AGENT}, timeout=10) as client:
        for email in rng.sample(watched, len(watched)):
            status = client.get(email.pixel).status_code
            opened.append(Opened(email, time.monotonic(), status))
            time.sleep(rng.uniform(*GAP_SECONDS))
    return opened


def _wait_for(pipe: Connection, expected: set[Key], deadline: float) -> list[Arrival]:
    """The arrivals once there is one for every expected (channel, address), or at the
    deadline."""
    while True:
        pipe.send("arrivals")
        arrivals: list[Arrival] = pipe.recv()
        if expected <= {(a.channel, a.address) for a in arrivals} or time.monotonic() > deadline:
            return arrivals
        time.sleep(0.1)


def _delivery_states(engine: Engine) -> dict[str, int]:
    """How many deliveries the server wrote, by status, as it left them."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(deliveries.c.status, func.count()).group_by(deliveries.c.status)
        ).all()
    return {str(status): int(count) for status, count in rows}


def _summary(values: list[float]) -> tuple[float, float, float, float]:
    """min, p50, p99, max; p99 interpolated between the samples, never past the max."""
    if len(values) < 2:
        return (values[0],) * 4 if values else (float("nan"),) * 4
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return min(values), cuts[49], cuts[98], max(values)


def _report(opened: list[Opened], arrivals: list[Arrival], states: dict[str, int]) -> int:
    answered: dict[Key, float] = {
        (o.watched.channel, o.watched.address): o.answered for o in opened
    }
    came = Counter((a.channel, a.address) for a in arrivals)
    first: dict[Key, float] = {}
    for arrival in sorted(arrivals, key=lambda a: a.at):
        first.setdefault((arrival.channel, arrival.address), arrival.at)
    print(f"\nalert latency: open pixel answered -> alert arrived, {len(opened)} opens (s)")
    late = f"> {TARGET_P50:g} s"
    print(f"{'channel':8} {'n':>4} {'min':>6} {'p50':>6} {'p99':>6} {'max':>6} {late:>7}")
    p50s = {}
    for channel, _, _ in USERS:
        latencies = [
            at - answered[key] for key, at in first.items() if key[0] == channel and key in answered
        ]
        low, p50, p99, high = _summary(latencies)
        p50s[channel] = p50
        over = sum(latency > TARGET_P50 for latency in latencies)
        print(
            f"{channel:8} {len(latencies):4} {low:6.2f} {p50:6.2f} {p99:6.2f} {high:6.2f} {over:7}"
        )
    not_ok = sum(o.status != 200 for o in opened)
    missing = len(answered.keys() - first.keys())
    twice = sum(n > 1 for n in came.values())
    strays = len(first.keys() - answered.keys())
    print(
        f"\nnot 200: {not_ok}; no alert {WAIT_AFTER_LAST_OPEN:g} s after the last open: "
        f"{missing}; alerted twice: {twice}; alerts about no open: {strays}"
    )
    written = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    print(f"deliveries in the database: {written or 'none'}")
    met = all(p50 <= TARGET_P50 for p50 in p50s.values())
    print(
        "judged: p50 "
        + ", ".join(f"{channel} {p50:.2f} s" for channel, p50 in p50s.items())
        + f" (target <= {TARGET_P50:g} s: the {SETTLE.total_seconds():g} s settle + 1 s): "
        + ("met" if met else "NOT met")
    )
    return 1 if not_ok or missing or twice or strays else 0


if __name__ == "__main__":
    sys.exit(main())

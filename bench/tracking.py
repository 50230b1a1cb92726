"""Benchmark: the open pixel with durable recording vs a bare ASGI app, in the same run, and how
far behind the load the database holds the hits.

    .venv/bin/python bench/tracking.py [--seconds 10] [--rounds 3] [--connections 64]
        [--lag-rate 100] [--lag-seconds 3]

Starts each server (uvicorn, one worker) in turn: the bare app, mailbeacon on SQLite, mailbeacon
on PostgreSQL (skipped when none answers), and mailbeacon with recording off for reference, and
does that for every target in each of several rounds. Per target and round:

- Load: wrk when installed, else a Python load generator, for the same time at the same
  concurrency: requests/s, p50 and p99 latency, and the ratio to the bare app of the same round.
- Drain (recording targets): the server keeps running after the load; the events table is
  counted every 50 ms until it holds the 200 responses counted. Drain time: from the end of the
  load to that count; not drained within 120 s is a failure.
- Lag (recording targets, after the drain): once the count has held still for 0.5 s (hits wrk
  had in flight may still be loading), one keep-alive connection sends pixel hits one after
  another at --lag-rate a second for --lag-seconds, while a thread with its own connection
  counts the events every 10 ms. The k-th hit answered 200 is the k-th row past the count before
  the phase, so its lag is the time of the first count that reached it less the time its answer
  arrived (0 when it was counted before the answer arrived; each count's time is when its
  query returned, so lags are late by up to one poll).
- Then the server is stopped (SIGTERM) and the events it recorded are checked against the 200s
  of the load and the lag phase, give or take the requests wrk had in flight.

Prints the medians over rounds (and the per-round ratios and drain times).
Judged by: SQLite ratio >= 0.45, SQLite p99 < 50 ms, PostgreSQL req/s >= 0.90 of SQLite's,
drain of a 10 s burst within 30 s, lag p50 and p99 under 1 s. Targets not met are reported;
the exit code is 1 only when events differ from the 200s or the database did not catch up.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
from sqlalchemy import Connection, Engine, create_engine, func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailbeacon.serve import free_port  # noqa: E402
from mailbeacon.settings import load_settings, with_generated_keys  # noqa: E402
from outreach.emails import Draft, create_email, mark_sent  # noqa: E402
from store.clock import utcnow  # noqa: E402
from store.engine import make_engine  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from store.schema import events  # noqa: E402
from tracking.instrument import TrackingFlags  # noqa: E402
from tracking.tokens import TokenSigner  # noqa: E402

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
AGENT = "Mozilla/5.0 (X11; Linux x86_64) Thunderbird/128.0"
BARE, SQLITE, POSTGRES = "bare ASGI", "mailbeacon sqlite", "mailbeacon postgresql"

DRAIN_TIMEOUT = 120.0
DRAIN_POLL = 0.05
LAG_POLL = 0.01
SETTLE = 0.5  # the count holds still this long before the lag phase takes it as its base

# Targets: reported as met or not, never failing the run (this machine's speed drifts).
SQLITE_RATIO = 0.45
SQLITE_P99_MS = 50.0
POSTGRES_TO_SQLITE = 0.90
DRAIN_S = 30.0  # for the default 10 s burst
LAG_MS = 1000.0


@dataclass(frozen=True)
class Load:
    ok: int  # 200 responses counted by the load generator
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.ok / self.seconds


@dataclass(frozen=True)
class Lag:
    answered: int  # 200 responses in the lag phase
    lags_ms: tuple[float, ...]  # one per hit the database held within the timeout

    @property
    def missing(self) -> int:
        return self.answered - len(self.lags_ms)

    @property
    def p50_ms(self) -> float:
        return _percentile(self.lags_ms, 50)

    @property
    def p99_ms(self) -> float:
        return _percentile(self.lags_ms, 99)


@dataclass(frozen=True)
class Recording:
    recorded: int  # events added while the server ran, counted after it stopped
    drain_s: float | None  # None: not drained within DRAIN_TIMEOUT
    lag: Lag | None  # None: not drained, so not measured


@dataclass(frozen=True)
class Outcome:
    name: str
    load: Load
    recording: Recording | None = None  # None: a target that records nothing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--emails", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lag-rate", type=float, default=100, help="pixel hits a second")
    parser.add_argument("--lag-seconds", type=float, default=3)
    parser.add_argument(
        "--postgres", default=os.environ.get("MAILBEACON_TEST_DATABASE_URL", DEFAULT_PG)
    )
    parser.add_argument(
        "--generator", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python"
    )
    args = parser.parse_args()
    print(
        f"load: {args.generator}, {args.connections} connections, {args.seconds:g} s per target, "
        f"{args.rounds} rounds, {os.cpu_count()} cores; lag: {args.lag_rate:g} hits/s for "
        f"{args.lag_seconds:g} s"
    )

    with tempfile.TemporaryDirectory(prefix="mailbeacon-bench-") as folder, ExitStack() as stack:
        targets = _prepare(args, folder, stack)
        # Round after round, every target in turn: this machine's speed drifts by tens of
        # percent over a minute, so each round compares targets measured side by side.
        rounds = []
        for number in range(1, args.rounds + 1):
            print(f"round {number} of {args.rounds}", flush=True)
            rounds.append([_measure(args, target) for target in targets])
    return _report(rounds, args)


@dataclass(frozen=True)
class Target:
    name: str
    command: list[str]
    env: dict[str, str]
    paths: Path  # the pixel paths wrk cycles through
    db_url: str | None = None  # where its events are counted; None: nothing recorded
    bare: bool = False


def _prepare(args: argparse.Namespace, folder: str, stack: ExitStack) -> list[Target]:
    """The bare app, then mailbeacon on each database, seeded once for every round."""
    warmup = Path(folder) / "bare-paths.txt"
    warmup.write_text("/t/o/warmup.gif\n")
    targets = [Target(BARE, ["bench.bare_app:app"], {}, warmup, bare=True)]
    # name, database, tracking on: the last row is a reference, everything but the writes.
    databases = [(SQLITE, f"sqlite:///{folder}/bench.db", True)]
    if _postgres_answers(args.postgres):
        schema = stack.enter_context(_database(args.postgres))
        databases.append((POSTGRES, schema, True))
    else:
        print(f"PostgreSQL not reachable at {args.postgres}: skipped")
    databases.append(("(sqlite, recording off)", f"sqlite:///{folder}/off.db", False))
    for number, (name, db_url, tracking) in enumerate(databases):
        # A data folder (and so a journal) of its own: no server loads another's hits.
        data = Path(folder) / f"data-{number}"
        data.mkdir()
        env = _environment(str(data), db_url)
        paths = Path(folder) / f"paths-{number}.txt"
        paths.write_text("\n".join(_seed(env, args.emails)) + "\n")
        env["MAILBEACON__TRACKING__ENABLED"] = str(tracking).lower()
        command = ["-m", "mailbeacon.cli", "serve"]
        targets.append(Target(name, command, env, paths, db_url if tracking else None))
    return targets


def _measure(args: argparse.Namespace, target: Target) -> Outcome:
    if target.db_url is None:
        with _server(target.command, target.env, bare=target.bare) as port:
            return Outcome(target.name, _drive(args, port, target.paths))
    with _engine(target.db_url) as engine, engine.connect() as connection:
        before = _count(connection)
        with _server(target.command, target.env) as port:
            load = _drive(args, port, target.paths)
            ended = time.monotonic()
            drained = _until(
                lambda: _count(connection) >= before + load.ok,
                ended + DRAIN_TIMEOUT,
                DRAIN_POLL,
            )
            lag: Lag | None = None
            if drained is not None:
                base = _settled(connection)
                lag = _lag_phase(args, port, target.paths, engine, base)
        # The server has stopped, and flushed what it had: every hit it answered is in.
        recorded = _count(connection) - before
    drain_s = None if drained is None else drained - ended
    return Outcome(target.name, load, Recording(recorded, drain_s, lag))


def _environment(folder: str, db_url: str) -> dict[str, str]:
    return {
        "MAILBEACON__DATA_DIR": folder,
        "MAILBEACON__TRACKING__REPLY_SYNC_SECONDS": "0",  # measure the pixel alone
        "MAILBEACON__NOTIFIER__DISPATCH_SECONDS": "0",
        "MAILBEACON__DATABASE__URL": db_url,
    }


def _seed(env: dict[str, str], count: int) -> list[str]:
    """Emails to hit, sent an hour ago, each with a pixel; returns the pixel paths."""
    settings = with_generated_keys(load_settings(None, env))
    engine = make_engine(settings.database)
    upgrade(engine)
    signer = TokenSigner(settings.tracking.signing_keys)
    html = '<html><body><p>Hello <a href="https://example.com/a">a</a></p></body></html>'
    paths = []
    with engine.begin() as connection:
        for i in range(count):
            draft = Draft(
                f"bench-{uuid.uuid4()}-{i}",
                [f"r{i}@bench.example"],
                "Hi",
                html,
                "Hi",
                TrackingFlags(opens=True, clicks=True),
            )
            email_id, _ = create_email(connection, draft, signer, settings.tracking)
            mark_sent(
                connection,
                email_id,
                message_id=f"<{uuid.uuid4()}@bench>",
                sent_at=utcnow() - timedelta(hours=1),
            )
            paths.append(f"/t/o/{signer.open_token(email_id)}.gif")
    engine.dispose()
    return paths


@contextmanager
def _database(url: str) -> Iterator[str]:
    """A PostgreSQL schema of its own, dropped afterwards: its URL."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        separator = "&" if "?" in url else "?"
        yield f"{url}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@contextmanager
def _server(command: list[str], env: dict[str, str], bare: bool = False) -> Iterator[int]:
    port = free_port()
    if bare:
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            *command,
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--workers",
            "1",
        ]
    else:
        argv = [sys.executable, *command]
        env = {**env, "MAILBEACON__SERVER__PORT": str(port)}
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit(f"server {command} did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def _drive(args: argparse.Namespace, port: int, paths_file: Path) -> Load:
    if args.generator == "wrk":
        return _wrk(port, paths_file, args.seconds, args.connections)
    paths = paths_file.read_text().split()
    return asyncio.run(_python_load(port, paths, args.seconds, args.connections))


def _wrk(port: int, paths_file: Path, seconds: float, connections: int) -> Load:
    result = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "5s",
            "-s",
            str(ROOT / "bench" / "tracking.lua"),
            f"http://127.0.0.1:{port}",
        ],
        env={**os.environ, "BENCH_PATHS": str(paths_file)},
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    ok, _requests, duration_us, p50_us, p99_us = map(int, line.split()[1:])
    return Load(ok, duration_us / 1e6, p50_us / 1000, p99_us / 1000)


async def _python_load(port: int, paths: list[str], seconds: float, connections: int) -> Load:
    """Keep-alive HTTP/1.1 over raw sockets; each connection finishes its last request."""
    latencies: list[float] = []
    ok = 0
    deadline = time.monotonic() + seconds

    async def connection(offset: int) -> None:
        nonlocal ok
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = offset
        while time.monotonic() < deadline:
            path = paths[i % len(paths)]
            i += 1
            started = time.perf_counter()
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: bench\r\nUser-Agent: {AGENT}\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(h.split(b":")[1])
                for h in head.split(b"\r\n")
                if h.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            ok += head.startswith(b"HTTP/1.1 200")
        writer.close()

    started = time.monotonic()
    await asyncio.gather(*(connection(i * 7919) for i in range(connections)))
    elapsed = time.monotonic() - started
    return Load(ok, elapsed, _percentile(latencies, 50) * 1000, _percentile(latencies, 99) * 1000)


def _lag_phase(
    args: argparse.Namespace, port: int, paths_file: Path, engine: Engine, base: int
) -> Lag:
    """Paced hits while a thread counts the events: see the module docstring."""
    polls: list[tuple[float, int]] = []  # (when the count returned, the count)
    stop = threading.Event()
    poller = threading.Thread(target=_poll, args=(engine, polls, stop), daemon=True)
    poller.start()
    try:
        answered = _paced_hits(
            port, paths_file.read_text().split(), args.lag_rate, args.lag_seconds
        )
        target = base + len(answered)
        _until(lambda: bool(polls) and polls[-1][1] >= target, time.monotonic() + DRAIN_TIMEOUT)
    finally:
        stop.set()
        poller.join()
    return Lag(len(answered), _lags_ms(base, answered, polls))


def _paced_hits(port: int, paths: list[str], rate: float, seconds: float) -> list[float]:
    """Pixel hits one after another on one keep-alive connection, `rate` a second at most:
    when each 200 answer arrived."""
    answered = []
    headers = {"User-Agent": AGENT}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
        start = time.monotonic()
        for i in range(round(rate * seconds)):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            if client.get(paths[i % len(paths)]).status_code == 200:
                answered.append(time.monotonic())
    return answered


def _poll(engine: Engine, polls: list[tuple[float, int]], stop: threading.Event) -> None:
    with engine.connect() as connection:
        while not stop.is_set():
            count = _count(connection)
            polls.append((time.monotonic(), count))
            stop.wait(LAG_POLL)


def _lags_ms(base: int, answered: list[float], polls: list[tuple[float, int]]) -> tuple[float, ...]:
    """Hit k (from 1) is row base + k: its lag is the time of the first count that reached it
    less the time its answer arrived, 0 when counted before. Hits never counted are left out."""
    reached = list(itertools.accumulate((count for _, count in polls), max))
    lags = []
    for k, answer in enumerate(answered, start=1):
        i = bisect.bisect_left(reached, base + k)
        if i == len(polls):
            break
        lags.append(max(0.0, polls[i][0] - answer) * 1000)
    return tuple(lags)


@contextmanager
def _engine(url: str) -> Iterator[Engine]:
    engine = make_engine(load_settings(None, {"MAILBEACON__DATABASE__URL": url}).database)
    try:
        yield engine
    finally:
        engine.dispose()


def _count(connection: Connection) -> int:
    count = connection.scalar(select(func.count()).select_from(events)) or 0
    # End the read transaction: SQLite's would otherwise keep showing the same snapshot.
    connection.rollback()
    return count


def _until(reached: Callable[[], bool], deadline: float, every: float = DRAIN_POLL) -> float | None:
    """When `reached` first held, checked every `every` s; None once past the deadline."""
    while not reached():
        if time.monotonic() > deadline:
            return None
        time.sleep(every)
    return time.monotonic()


def _settled(connection: Connection) -> int:
    """The count once it has held still for SETTLE s: hits wrk had in flight when it stopped
    were answered without being counted, and may still be loading."""
    count, since = _count(connection), time.monotonic()
    deadline = since + DRAIN_TIMEOUT
    while time.monotonic() - since < SETTLE and time.monotonic() < deadline:
        time.sleep(DRAIN_POLL)
        if (now := _count(connection)) != count:
            count, since = now, time.monotonic()
    return count


def _postgres_answers(url: str) -> bool:
    try:
        engine = create_engine(
            url.replace("postgresql://", "postgresql+psycopg://", 1),
            connect_args={"connect_timeout": 2},
        )
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


def _percentile(values: Sequence[float], p: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100)[p - 1]


@dataclass(frozen=True)
class Goal:
    label: str
    value: str
    target: str
    met: bool


def _report(rounds: list[list[Outcome]], args: argparse.Namespace) -> int:
    """Medians over the rounds; each ratio is to the bare app of its own round."""
    columns = {column[0].name: list(column) for column in zip(*rounds, strict=True)}
    ratios = {name: _ratios(runs, columns[BARE]) for name, runs in columns.items()}
    _print_load(columns, ratios)
    failed = _print_recording(columns, args.connections)
    goals = [
        Goal(
            "SQLite pixel, ratio to the bare ASGI app",
            f"{statistics.median(ratios[SQLITE]):.2f}",
            f">= {SQLITE_RATIO:.2f}",
            statistics.median(ratios[SQLITE]) >= SQLITE_RATIO,
        ),
        _p99_goal(columns[SQLITE]),
    ]
    if POSTGRES in columns:
        goals.append(_postgres_goal(columns[POSTGRES], columns[SQLITE]))
    for name in (SQLITE, POSTGRES):
        if name in columns:
            goals += _recording_goals(name, columns[name], args.seconds)
    print("\njudged (not met is reported, not failed; medians over rounds):")
    for goal in goals:
        print(
            f"  {goal.label:46} {goal.value:>20}  target {goal.target:10} "
            f"{'met' if goal.met else 'not met'}"
        )
    return 1 if failed else 0


def _ratios(runs: list[Outcome], to: list[Outcome]) -> list[float]:
    """Each round's requests/s over those of `to` in the same round."""
    return [run.load.rps / other.load.rps for run, other in zip(runs, to, strict=True)]


def _print_load(columns: dict[str, list[Outcome]], ratios: dict[str, list[float]]) -> None:
    print(
        f"\n{'during the load (median of ' + str(len(columns[BARE])) + ')':34} {'req/s':>8} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'ratio':>6}  ratios per round"
    )
    for name, runs in columns.items():
        print(
            f"{name:34} {statistics.median(r.load.rps for r in runs):8.0f} "
            f"{statistics.median(r.load.p50_ms for r in runs):7.1f} "
            f"{statistics.median(r.load.p99_ms for r in runs):7.1f} "
            f"{statistics.median(ratios[name]):6.2f}  {_each(ratios[name])}"
        )
    if POSTGRES in columns:
        per_round = _ratios(columns[POSTGRES], columns[SQLITE])
        print(
            f"PostgreSQL/SQLite req/s: {statistics.median(per_round):.2f}, "
            f"per round {_each(per_round)}"
        )


def _print_recording(columns: dict[str, list[Outcome]], connections: int) -> bool:
    """The drain, the lag and the events check of each recording target: whether one failed."""
    print(
        f"\n{'after the load':34} {'drain s':>8} {'per round':>16} {'lag p50':>8} {'lag p99':>8}"
        "  events = 200s"
    )
    failed = False
    for name, runs in columns.items():
        if runs[0].recording is None:
            continue
        after = _after_load(runs)
        checks = [_check(run, connections) for run in runs]
        failed |= any(not ok for ok, _ in checks)
        print(
            f"{name:34} {_seconds(after.drain_s):>8} "
            f"{' '.join(_seconds(drain) for drain in after.drains):>16} "
            f"{_ms(after.lag_p50_ms):>8} {_ms(after.lag_p99_ms):>8}  "
            f"{'; '.join(text for _, text in checks)}"
        )
    return failed


def _check(run: Outcome, connections: int) -> tuple[bool, str]:
    """Events recorded against 200s counted (load and lag phase). wrk stops with up to one
    request per connection in flight: the server may have recorded those without wrk counting
    the answer. Never fewer. Whether it passed, and what to print."""
    assert run.recording is not None
    recording = run.recording
    if recording.drain_s is None:
        return False, f"FAILED: not drained in {DRAIN_TIMEOUT:.0f} s"
    assert recording.lag is not None
    lag = recording.lag
    if lag.missing:
        return False, f"FAILED: {lag.missing} lag-phase hits not in within {DRAIN_TIMEOUT:.0f} s"
    in_flight = recording.recorded - run.load.ok - lag.answered
    ok = 0 <= in_flight <= connections
    return ok, (
        f"{'ok' if ok else 'MISMATCH'} ({recording.recorded} = {run.load.ok} + "
        f"{lag.answered} lag + {in_flight} in flight)"
    )


def _p99_goal(runs: list[Outcome]) -> Goal:
    p99 = statistics.median(r.load.p99_ms for r in runs)
    return Goal(
        "SQLite p99 latency", f"{p99:.1f} ms", f"< {SQLITE_P99_MS:.0f} ms", p99 < SQLITE_P99_MS
    )


def _postgres_goal(postgres: list[Outcome], sqlite: list[Outcome]) -> Goal:
    ratio = statistics.median(_ratios(postgres, sqlite))
    return Goal(
        "PostgreSQL req/s over SQLite's",
        f"{ratio:.2f}",
        f">= {POSTGRES_TO_SQLITE:.2f}",
        ratio >= POSTGRES_TO_SQLITE,
    )


@dataclass(frozen=True)
class AfterLoad:
    """A recording target's medians over rounds; None when some round did not catch up."""

    drains: list[float | None]
    drain_s: float | None
    lag_p50_ms: float | None
    lag_p99_ms: float | None


def _after_load(runs: list[Outcome]) -> AfterLoad:
    drains = [run.recording.drain_s if run.recording else None for run in runs]
    lags = [run.recording.lag if run.recording else None for run in runs]
    complete = [lag for lag in lags if lag is not None and not lag.missing]
    if len(complete) < len(lags):
        return AfterLoad(drains, _median_or_none(drains), None, None)
    return AfterLoad(
        drains,
        _median_or_none(drains),
        statistics.median(lag.p50_ms for lag in complete),
        statistics.median(lag.p99_ms for lag in complete),
    )


def _recording_goals(name: str, runs: list[Outcome], seconds: float) -> list[Goal]:
    after = _after_load(runs)
    drain, p50, p99 = after.drain_s, after.lag_p50_ms, after.lag_p99_ms
    return [
        Goal(
            f"{name}: drain after a {seconds:g} s burst",
            f"not drained in {DRAIN_TIMEOUT:.0f} s" if drain is None else f"{drain:.2f} s",
            f"<= {DRAIN_S:.0f} s",
            drain is not None and drain <= DRAIN_S,
        ),
        Goal(f"{name}: lag p50", _ms(p50), f"< {LAG_MS:.0f} ms", p50 is not None and p50 < LAG_MS),
        Goal(f"{name}: lag p99", _ms(p99), f"< {LAG_MS:.0f} ms", p99 is not None and p99 < LAG_MS),
    ]


def _median_or_none(values: list[float | None]) -> float | None:
    """None when one of them is None: a round that never caught up."""
    known = [value for value in values if value is not None]
    return statistics.median(known) if known and len(known) == len(values) else None


def _seconds(value: float | None) -> str:
    return "timeout" if value is None else f"{value:.2f}"


def _ms(value: float | None) -> str:
    return "missing" if value is None else f"{value:.0f} ms"


def _each(values: list[float]) -> str:
    return " ".join(f"{value:.2f}" for value in values)


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the open pixel with durable recording vs a bare ASGI app, in the same run.

    .venv/bin/python bench/tracking.py [--seconds 10] [--rounds 3] [--connections 64]

Starts each server (uvicorn, one worker) in turn: the bare app, mailbeacon on SQLite, mailbeacon
on PostgreSQL (skipped when none answers), and mailbeacon with recording off for reference.
Drives each with wrk when installed, else a Python load generator, for the same time at the same
concurrency; does that for every target in each of several rounds, then prints the medians of
requests/s, p50 and p99 latency and of the ratio to the bare app of the same round, and checks
in every round that the events recorded equal the 200 responses counted.
Judged by: SQLite ratio >= 0.50, p99 < 50 ms, and events recorded = 200 responses.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
from sqlalchemy import create_engine, func, select, text

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
class Outcome:
    name: str
    load: Load
    recorded: int | None = None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--emails", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--postgres", default=os.environ.get("MAILBEACON_TEST_DATABASE_URL", DEFAULT_PG)
    )
    parser.add_argument(
        "--generator", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python"
    )
    args = parser.parse_args()
    print(
        f"load: {args.generator}, {args.connections} connections, {args.seconds:g} s per target, "
        f"{args.rounds} rounds, {os.cpu_count()} cores"
    )

    with tempfile.TemporaryDirectory(prefix="mailbeacon-bench-") as folder, ExitStack() as stack:
        targets = _prepare(args, folder, stack)
        # Round after round, every target in turn: this machine's speed drifts by tens of
        # percent over a minute, so each round compares targets measured side by side.
        rounds = []
        for number in range(1, args.rounds + 1):
            print(f"round {number} of {args.rounds}", flush=True)
            rounds.append([_measure(args, target) for target in targets])
    return _report(rounds, args.connections)


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
    targets = [Target("bare ASGI", ["bench.bare_app:app"], {}, warmup, bare=True)]
    # name, database, tracking on: the last row is a reference, everything but the writes.
    databases = [("mailbeacon sqlite", f"sqlite:///{folder}/bench.db", True)]
    if _postgres_answers(args.postgres):
        schema = stack.enter_context(_database(args.postgres))
        databases.append(("mailbeacon postgresql", schema, True))
    else:
        print(f"PostgreSQL not reachable at {args.postgres}: skipped")
    databases.append(("(sqlite, recording off)", f"sqlite:///{folder}/off.db", False))
    for number, (name, db_url, tracking) in enumerate(databases):
        env = _environment(folder, db_url)
        paths = Path(folder) / f"paths-{number}.txt"
        paths.write_text("\n".join(_seed(env, args.emails)) + "\n")
        env["MAILBEACON__TRACKING__ENABLED"] = str(tracking).lower()
        command = ["-m", "mailbeacon.cli", "serve"]
        targets.append(Target(name, command, env, paths, db_url if tracking else None))
    return targets


def _measure(args: argparse.Namespace, target: Target) -> Outcome:
    before = _count_events(target.db_url) if target.db_url else 0
    with _server(target.command, target.env, bare=target.bare) as port:
        load = _drive(args, port, target.paths)
    # The server has stopped, and flushed its recorder: every hit it answered is in.
    recorded = _count_events(target.db_url) - before if target.db_url else None
    return Outcome(target.name, load, recorded)


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
    quantiles = statistics.quantiles(latencies, n=100)
    return Load(ok, elapsed, quantiles[49] * 1000, quantiles[98] * 1000)


def _count_events(url: str) -> int:
    engine = make_engine(load_settings(None, {"MAILBEACON__DATABASE__URL": url}).database)
    with engine.connect() as connection:
        count = connection.scalar(select(func.count()).select_from(events)) or 0
    engine.dispose()
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


def _report(rounds: list[list[Outcome]], connections: int) -> int:
    """Medians over the rounds; each ratio is to the bare app of its own round."""
    print(
        f"\n{'target (median of ' + str(len(rounds)) + ')':26} {'req/s':>8} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'ratio':>6} {'ratios per round':>18}  events = 200s"
    )
    failed = False
    medians: dict[str, tuple[float, float]] = {}
    for column in range(len(rounds[0])):
        runs = [outcomes[column] for outcomes in rounds]
        ratios = [outcomes[column].load.rps / outcomes[0].load.rps for outcomes in rounds]
        ratio, p99 = statistics.median(ratios), statistics.median(r.load.p99_ms for r in runs)
        medians[runs[0].name] = (ratio, p99)
        row = (
            f"{runs[0].name:26} {statistics.median(r.load.rps for r in runs):8.0f} "
            f"{statistics.median(r.load.p50_ms for r in runs):7.1f} {p99:7.1f} {ratio:6.2f} "
            f"{' '.join(f'{r:.2f}' for r in ratios):>18}"
        )
        checks = [_check(run, connections) for run in runs if run.recorded is not None]
        failed |= any(check.startswith("MISMATCH") for check in checks)
        print(f"{row}  {'; '.join(checks)}" if checks else row)
    ratio, p99 = medians["mailbeacon sqlite"]
    print(
        f"\njudged: SQLite pixel at {ratio:.0%} of the bare ASGI app (target >= 50%), "
        f"p99 {p99:.1f} ms (target < 50 ms)"
    )
    return 1 if failed else 0


def _check(run: Outcome, connections: int) -> str:
    """Events recorded against 200s counted. wrk stops with up to one request per connection
    in flight: the server may have committed those without wrk counting the answer. Never
    fewer."""
    assert run.recorded is not None
    in_flight = run.recorded - run.load.ok
    verdict = "ok" if 0 <= in_flight <= connections else "MISMATCH"
    return f"{verdict} ({run.recorded} = {run.load.ok} + {in_flight} in flight)"


if __name__ == "__main__":
    sys.exit(main())

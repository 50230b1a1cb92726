"""`mailbeacon cmd "<text>" --as <email>`: exactly what `/beacon <text>` runs, as text or JSON."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from bot.context import CommandFailed
from bot.jobs import get_job, run_due
from bot.registry import run_text
from bot.users import User, find_user, sync_config_users
from mailbeacon.context import command_context, job_contexts
from mailbeacon.progress import ProgressDisplay
from mailbeacon.settings import Settings
from mailbeacon.worker import RENEW_SECONDS, Worker
from outreach.accounts import (
    reencrypt_mailboxes,
    set_default_mailbox,
)
from outreach.templates import sync_templates
from store.crypto import CredentialCipher


def prepare(settings: Settings, engine: Engine) -> None:
    """What `serve` and `cmd` do at start: users from config, credentials under the newest
    key, the default mailbox, templates from their folder."""
    with engine.begin() as connection:
        sync_config_users(connection, settings.users)
        # After a key rotation (a new key put first), the old key can go once this has run.
        reencrypt_mailboxes(connection, CredentialCipher(settings.secrets.encryption_keys))
        default = settings.outreach.default_mailbox
        if not set_default_mailbox(connection, default):
            print(
                f"mailbeacon: outreach.default_mailbox = {default!r} is not connected yet: "
                f"run `mailbeacon connect gmail|outlook --as <its owner>` with that mailbox",
                file=sys.stderr,
            )
    folder = Path(settings.outreach.templates_dir)
    if not folder.is_dir():  # a fresh install outside the repository: say so, and go on
        print(
            f"mailbeacon: no templates folder at {folder}: `mailbeacon init` creates it "
            "with an example, or set outreach.templates_dir",
            file=sys.stderr,
        )
        return
    report = sync_templates(engine, folder)
    for bad in report.bad_files:
        print(f"mailbeacon: template {bad.name} skipped: {bad.reason}", file=sys.stderr)


NOT_A_USER = "{who} is not an internal user: add it under `users:` in the config file"


def _user(settings: Settings, engine: Engine, who: str) -> User | None:
    prepare(settings, engine)
    with engine.connect() as connection:
        return find_user(connection, who)


def run_cmd(
    settings: Settings,
    engine: Engine,
    text: str,
    who: str,
    *,
    yes: bool = False,
    as_json: bool = False,
    wait: bool = True,
) -> int:
    """Run `text` as `who`; a job it starts is waited for (and run here when no worker is
    running), unless `wait` is False."""
    user = _user(settings, engine, who)
    if user is None:
        return _fail(NOT_A_USER.format(who=who), as_json)
    try:
        reply = run_text(text, command_context(settings, engine, user), confirmed=yes)
    except CommandFailed as exc:
        return _fail(str(exc), as_json)
    outcome: dict[str, Any] = {
        "ok": True,
        "text": reply.text,
        "data": reply.data,
        "needs_confirmation": reply.needs_confirmation,
    }
    if not as_json:
        print(reply.text, flush=True)
    if reply.job is not None:
        if wait:
            display = ProgressDisplay(sys.stderr)
            try:
                row = wait_for_job(settings, engine, reply.job, display)
            finally:
                display.close()
        else:
            with engine.connect() as connection:
                row = get_job(connection, reply.job)
        outcome["job"] = job_outcome(row)
        outcome["ok"] = row.status != "failed"
        if not as_json:
            print(
                _job_text(row, waited=wait),
                file=sys.stderr if row.status == "failed" else sys.stdout,
            )
    if as_json:
        print(json.dumps(outcome, default=str))
    return 0 if outcome["ok"] else 1


def job_outcome(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "status": row.status,
        "done": row.progress_done,
        "total": row.progress_total,
        "note": row.progress_note,
        "result": row.result,
        "error": row.error,
    }


def _job_text(row: Any, *, waited: bool) -> str:
    if row.status == "done":
        return str((row.result or {}).get("text", f"Job #{row.id} is done."))
    if row.status == "failed":
        return f"mailbeacon: job #{row.id} failed: {row.error}"
    if not waited:
        return f"Job #{row.id} is {row.status}: `/beacon jobs` shows how far it got."
    when = f" until {row.run_after:%H:%M} UTC" if row.run_after is not None else ""
    return (
        f"Job #{row.id} waits{when} ({row.progress_note or row.status}): a running "
        "`mailbeacon serve` goes on with it then."
    )


POLL_SECONDS = 0.2


def wait_for_job(
    settings: Settings, engine: Engine, job_id: int, show: Callable[[Any], None]
) -> Any:
    """Follow a job until it ends or waits for later. When no worker is running, this process
    takes the worker lease and runs the job itself (only that one), then hands the lease on."""
    worker = Worker(engine)
    runner: threading.Thread | None = None
    if worker.renew():
        runner = threading.Thread(
            target=_run_here, args=(settings, engine, worker, job_id), daemon=True
        )
        runner.start()
    while True:
        with engine.connect() as connection:
            row = get_job(connection, job_id)
        show(row)
        later = row.status == "queued" and row.run_after is not None
        if row.status in ("done", "failed") or (
            later and (runner is None or not runner.is_alive())
        ):
            break
        time.sleep(POLL_SECONDS)
    if runner is not None:
        runner.join()
    return row


def _run_here(settings: Settings, engine: Engine, worker: Worker, job_id: int) -> None:
    done = threading.Event()

    def keep_lease() -> None:
        while not done.wait(RENEW_SECONDS):
            worker.renew()

    keeper = threading.Thread(target=keep_lease, daemon=True)
    keeper.start()
    try:
        run_due(engine, worker.owner, job_contexts(settings, engine), only=job_id)
    finally:
        done.set()
        keeper.join()
        worker.release()


def _fail(message: str, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"ok": False, "error": message}))
    else:
        print(f"mailbeacon: {message}", file=sys.stderr)
    return 1


def connect_link(settings: Settings, engine: Engine, provider: str, who: str) -> int:
    """Print the sign-in link that connects `who`'s own mailbox: `/beacon connect` as `who`.
    The running server (`serve`) is where the link leads and the answer comes back."""
    user = _user(settings, engine, who)
    if user is None:
        return _fail(NOT_A_USER.format(who=who), False)
    try:
        reply = run_text(f"connect {provider}", command_context(settings, engine, user))
    except CommandFailed as exc:
        return _fail(str(exc), False)
    print("The link leads to this server: `mailbeacon serve` must be running.")
    print(reply.text)
    return 0

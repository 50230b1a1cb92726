"""`/beacon me` and `/beacon jobs`: what mailbeacon knows about me, and my jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from bot.blocks import Block, escape, fields_section, header, renders, rows, section, when
from bot.context import Context, Reply
from bot.jobs import describe, list_jobs
from bot.registry import command
from outreach.accounts import list_mailboxes
from store.schema import digests, subscriptions


@command(
    "me",
    usage="/beacon me",
    summary="What mailbeacon knows about you, your mailbox, and the link that marks your browser",
    section="You",
)
def me(_: None, context: Context) -> Reply:
    user = context.user
    with context.engine.connect() as connection:
        boxes = list_mailboxes(connection)
        alerts = connection.scalar(
            select(func.count())
            .select_from(subscriptions)
            .where(subscriptions.c.user_id == user.id)
        )
        digest = connection.execute(select(digests).where(digests.c.user_id == user.id)).first()
    own = next((box for box in boxes if box.owner_email == user.email), None)
    default = next((box for box in boxes if box.is_default), None)
    if own is not None:
        mailbox = f"{own.address} ({own.provider}), your own"
    elif default is not None:
        mailbox = f"{default.address} ({default.provider}), the team's default"
    else:
        mailbox = "the embedded Maildir (no mailbox is connected)"
    mark = f"{context.tracking.base_url}/t/me/{context.signer.user_token(user.id)}"
    digest_text = f"daily at {digest.at_time}" if digest is not None and digest.enabled else "off"
    data: dict[str, Any] = {
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "timezone": user.timezone,
        "quiet_hours": user.quiet_hours,
        "slack_user_id": user.slack_user_id,
        "mailbox": mailbox,
        "alerts": alerts or 0,
        "digest": digest_text,
        "mark_my_browser": mark,
    }
    lines = [
        f"{user.display_name} <{user.email}>, {user.role}, time zone {user.timezone}",
        f"Sends from: {mailbox}",
        f"Alerts: {data['alerts']} (`/beacon alerts list`); "
        f"quiet hours: {user.quiet_hours or 'none'}; digest: {digest_text}",
        f"Slack: {user.slack_user_id or 'not linked'}",
        f"Open {mark} once in each browser you read mail in: your own opens and clicks "
        "there then count as yours, not as the recipient's.",
    ]
    return Reply("\n".join(lines), data)


@renders("me")
def me_blocks(reply: Reply) -> list[Block]:
    d = reply.data
    return [
        header(escape(d["name"] or d["email"])),
        *fields_section(
            ("Email", d["email"]),
            ("Role", d["role"]),
            ("Time zone", d["timezone"]),
            ("Quiet hours", d["quiet_hours"] or "none"),
            ("Alerts", d["alerts"]),
            ("Digest", d["digest"]),
            ("Slack", d["slack_user_id"] or "not linked"),
        ),
        section(f"*Sends from:* {escape(d['mailbox'])}"),
        section(
            f"<{escape(d['mark_my_browser'])}|Mark this browser as yours>: open it once in each "
            "browser you read mail in; your own opens and clicks there then count as yours, "
            "not as the recipient's."
        ),
    ]


def job_line(row: Any, now: datetime) -> str:
    """One job, as `/beacon jobs` lists it."""
    state = row.status
    if row.status == "running" and row.progress_total:
        state += f", {row.progress_done}/{row.progress_total}"
    if row.status == "queued" and row.run_after is not None and row.run_after > now:
        minutes = max(1, round((row.run_after - now).total_seconds() / 60))
        state += f", again in {minutes} min"
    if row.progress_note and row.status in ("queued", "running"):
        state += f" ({row.progress_note})"
    if row.status == "failed":
        state += f": {row.error}"
    if row.status == "done" and row.result:
        state += f": {str(row.result.get('text', '')).splitlines()[0]}"
    return f"#{row.id} {describe(row)}: {state}"


@command(
    "jobs",
    usage="/beacon jobs",
    summary="Your send-outs and other slow work, with how far each got",
    section="You",
)
def jobs(_: None, context: Context) -> Reply:
    with context.engine.connect() as connection:
        rows = list_jobs(connection, context.user.id)
    if not rows:
        return Reply("You have no jobs: a send or a `digest now` starts one.", {"jobs": []})
    now = context.clock()
    data = [
        {
            "id": row.id,
            "kind": row.kind,
            "what": describe(row),
            "status": row.status,
            "done": row.progress_done,
            "total": row.progress_total,
            "note": row.progress_note,
            "error": row.error,
            "created_at": row.created_at.isoformat(),
        }
        for row in rows
    ]
    return Reply("\n".join(job_line(row, now) for row in rows), {"jobs": data})


@renders("jobs")
def jobs_blocks(reply: Reply) -> list[Block]:
    items = reply.data["jobs"]
    if not items:
        return [section("You have no jobs: a send or a `digest now` starts one.")]
    return [header("Your jobs"), *rows(items, _job_row)]


def _job_row(j: dict[str, Any]) -> str:
    state = escape(j["status"])
    if j["total"]:
        state += f", {j['done']}/{j['total']}"
    if j["note"] and j["status"] in ("queued", "running"):
        state += f" ({escape(j['note'])})"
    if j["error"]:
        state += f": {escape(j['error'])}"
    return f"*#{j['id']}* {escape(j['what'])}: {state}\nstarted {when(j['created_at'])}"

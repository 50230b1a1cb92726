"""`/beacon digest on|off|now`: the daily digest, and one sent at once (by a job)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from bot.context import CommandFailed, Context, Reply
from bot.grammar import CommandError, Token, words
from bot.jobs import Progress, enqueue, job
from bot.registry import command
from notifier.channels import ChannelError, EmailChannel, Recipient
from notifier.digests import compose, gather, set_digest, zone


@dataclass(frozen=True)
class Digest:
    action: Literal["on", "off", "now"]
    at: str | None = None  # "HH:MM", the user's local time


def parse_digest(text: str, args: list[Token]) -> Digest:
    said = words(args)
    if said in (["off"], ["now"]):
        return Digest("off" if said == ["off"] else "now")
    if said == ["on"]:
        return Digest("on")
    if len(said) == 3 and said[:2] == ["on", "at"]:
        hours, _, minutes = said[2].partition(":")
        if hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60:
            return Digest("on", f"{int(hours):02d}:{int(minutes):02d}")
        raise CommandError(
            f"`{args[2].text}` is not a time of day: say `at 09:00`, in your own time zone"
        )
    raise CommandError("say `digest on`, `digest on at 09:00`, `digest off` or `digest now`")


@command(
    "digest",
    usage="/beacon digest on [at 09:00] | digest off | digest now",
    summary="Your daily digest by email: on at an hour of your time zone, off, or now",
    parse=parse_digest,
    section="Alerts",
)
def digest(command: Digest, context: Context) -> Reply:
    user = context.user
    if command.action == "now":
        with context.engine.begin() as connection:
            job_id = enqueue(
                connection, "digest", {}, owner_user_id=user.id, reply_to=context.reply_to
            )
        return Reply(
            f"Your digest is on its way to {user.email} (job #{job_id}).",
            {"job": job_id},
            job=job_id,
        )
    with context.engine.begin() as connection:
        row = set_digest(connection, user.id, enabled=command.action == "on", at=command.at)
    if row.enabled:
        return Reply(
            f"Your daily digest comes by email at {row.at_time} ({user.timezone} time), with "
            "what your emails did the day before.",
            {"enabled": True, "at": row.at_time},
        )
    return Reply(
        "Your daily digest is off: `/beacon digest on` turns it back on.", {"enabled": False}
    )


@job("digest", describe=lambda arguments: "digest sent now")
def digest_job(arguments: dict[str, Any], context: Context, progress: Progress) -> dict[str, Any]:
    """Yesterday's digest, by email, now. Safe to repeat: its Message-ID is made from the job,
    so a retry after a crash finds it in the mailbox and sends nothing twice."""
    user = context.user
    yesterday = context.clock().astimezone(zone(user.timezone)).date() - timedelta(days=1)
    with context.engine.connect() as connection:
        composed = compose(gather(connection, user.id, yesterday, user.timezone))
    channel = EmailChannel(lambda recipient: context.mailbox_for(user))
    try:
        key = f"digest.{user.id}.job{progress.job_id}"
        channel.send(Recipient(user.id, user.email, user.name), composed, key)
    except ChannelError as exc:
        raise CommandFailed(f"the digest could not be sent: {exc}") from None
    return {
        "text": f"Sent to {user.email}:\n{composed.title}\n{composed.details}",
        "title": composed.title,
        "details": composed.details,
    }

"""`/beacon digest on|off|now`: the daily digest, and one sent at once (by a job)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from bot.blocks import Block, escape, renders, section
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
    via: str | None = None  # "email" or "slack"; None: as before


DIGEST_CHANNELS = ("email", "slack")


def parse_digest(text: str, args: list[Token]) -> Digest:
    said = words(args)
    if said in (["off"], ["now"]):
        return Digest("off" if said == ["off"] else "now")
    if not said or said[0] != "on":
        raise CommandError(
            "say `digest on`, `digest on at 09:00 via slack`, `digest off` or `digest now`"
        )
    rest, at, via = said[1:], None, None
    if rest[:1] == ["at"] and len(rest) >= 2:
        hours, _, minutes = rest[1].partition(":")
        if not (hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
            raise CommandError(
                f"`{args[2].text}` is not a time of day: say `at 09:00`, in your own time zone"
            )
        at, rest = f"{int(hours):02d}:{int(minutes):02d}", rest[2:]
    if rest[:1] == ["via"] and len(rest) == 2 and rest[1] in DIGEST_CHANNELS:
        via, rest = rest[1], []
    if rest:
        raise CommandError(
            f"`{' '.join(rest)}`: say `digest on [at 09:00] [via email|slack]`, `digest off` "
            "or `digest now`"
        )
    return Digest("on", at, via)


@command(
    "digest",
    usage="/beacon digest on [at 09:00] [via email|slack] | digest off | digest now",
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
    if command.via is not None and command.via not in context.alert_channels:
        raise CommandFailed(
            f"this server cannot send the digest via {command.via} yet: use `via email`"
        )
    with context.engine.begin() as connection:
        row = set_digest(
            connection, user.id, enabled=command.action == "on", at=command.at, channel=command.via
        )
    if row.enabled:
        how = "by email" if row.channel == "email" else "as a Slack message"
        return Reply(
            f"Your daily digest comes {how} at {row.at_time} ({user.timezone} time), with "
            "what your emails did the day before.",
            {"enabled": True, "at": row.at_time, "via": row.channel},
        )
    return Reply(
        "Your daily digest is off: `/beacon digest on` turns it back on.", {"enabled": False}
    )


@renders("digest")
def digest_blocks(reply: Reply) -> list[Block]:
    d = reply.data
    if "job" in d:
        return [section(f"Your digest is on its way by email (job #{d['job']}).")]
    if d["enabled"]:
        how = "by email" if d["via"] == "email" else "as a Slack message"
        return [
            section(
                f"Your daily digest comes {how} at *{escape(d['at'])}* (your time zone), "
                "with what your emails did the day before."
            )
        ]
    return [section("Your daily digest is off: `/beacon digest on` turns it back on.")]


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

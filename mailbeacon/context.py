"""The one place a command's Context is built, for `cmd`, the worker's jobs, the demo and
tests alike."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from bot.context import CommandFailed, Context
from bot.users import User, user_by_id
from mailbeacon.channels import channel_names
from mailbeacon.mailboxes import user_mailboxes
from mailbeacon.settings import Settings
from store.clock import Clock, utcnow
from tracking.tokens import TokenSigner


def command_context(
    settings: Settings, engine: Engine, user: User, clock: Clock = utcnow
) -> Context:
    mailbox_of = user_mailboxes(settings, engine)
    return Context(
        engine=engine,
        user=user,
        tracking=settings.tracking,
        signer=TokenSigner(settings.tracking.signing_keys),
        admin_send_threshold=settings.outreach.admin_send_threshold,
        mailbox_for=lambda sender: mailbox_of(sender.id, sender.email),
        clock=clock,
        alert_channels=channel_names(settings),
        oauth=settings.oauth,
    )


def job_contexts(
    settings: Settings, engine: Engine, clock: Clock = utcnow
) -> Callable[[int | None], Context]:
    """The context a job runs in: its owner's, as if they had typed it."""

    def context_for(user_id: int | None) -> Context:
        with engine.connect() as connection:
            user = None if user_id is None else user_by_id(connection, user_id)
        if user is None:
            raise CommandFailed("the user who started this job is no longer known")
        return command_context(settings, engine, user, clock)

    return context_for

"""`mailbeacon cmd "<text>" --as <email>`: exactly what `/beacon <text>` runs, as text or JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from bot.commands import CommandError, parse
from bot.context import CommandFailed, Context
from bot.handlers import execute
from bot.users import find_user, sync_config_users
from mailbeacon.channels import channel_names
from mailbeacon.mailboxes import user_mailboxes
from mailbeacon.settings import Settings
from outreach.accounts import (
    reencrypt_mailboxes,
    set_default_mailbox,
)
from outreach.oauth import OAuthError, check_configured, make_state, redirect_uri, sign_in_url
from outreach.templates import sync_templates
from store.clock import utcnow
from store.crypto import CredentialCipher
from tracking.tokens import TokenSigner


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
    report = sync_templates(engine, Path(settings.outreach.templates_dir))
    for bad in report.bad_files:
        print(f"mailbeacon: template {bad.name} skipped: {bad.reason}", file=sys.stderr)


NOT_A_USER = "{who} is not an internal user: add it under `users:` in the config file"


def _user(settings: Settings, engine: Engine, who: str) -> Any:
    prepare(settings, engine)
    with engine.connect() as connection:
        return find_user(connection, who)


def run_cmd(
    settings: Settings, engine: Engine, text: str, who: str, yes: bool, as_json: bool
) -> int:
    user = _user(settings, engine, who)
    if user is None:
        return _fail(NOT_A_USER.format(who=who), as_json)
    try:
        command = parse(text)
    except CommandError as exc:
        return _fail(str(exc), as_json)

    mailbox_of = user_mailboxes(settings, engine)

    context = Context(
        engine=engine,
        user=user,
        tracking=settings.tracking,
        signer=TokenSigner(settings.tracking.signing_keys),
        admin_send_threshold=settings.outreach.admin_send_threshold,
        mailbox_for=lambda sender: mailbox_of(sender.id, sender.email),
        progress=lambda line: print(f"mailbeacon: {line}", file=sys.stderr, flush=True),
        alert_channels=channel_names(settings),
    )
    try:
        reply = execute(command, context, confirmed=yes)
    except CommandFailed as exc:
        return _fail(str(exc), as_json)
    if as_json:
        print(
            json.dumps(
                {
                    "ok": True,
                    "text": reply.text,
                    "data": reply.data,
                    "needs_confirmation": reply.needs_confirmation,
                },
                default=str,
            )
        )
    else:
        print(reply.text)
    return 0


def _fail(message: str, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"ok": False, "error": message}))
    else:
        print(f"mailbeacon: {message}", file=sys.stderr)
    return 1


def connect_link(settings: Settings, engine: Engine, provider: str, who: str) -> int:
    """Print the sign-in link that connects `who`'s own mailbox; the running server (`serve`)
    receives the answer at <tracking.base_url>/oauth/…/callback."""
    user = _user(settings, engine, who)
    if user is None:
        return _fail(NOT_A_USER.format(who=who), False)
    try:
        check_configured(settings.oauth, provider)
        state = make_state(settings.tracking.signing_keys[0], user.id, provider, utcnow())
        back = redirect_uri(settings.tracking.base_url, provider)
        link = sign_in_url(settings.oauth, provider, back, state, login_hint=user.email)
    except OAuthError as exc:
        return _fail(str(exc), False)
    print(f"Open this link as {user.email} within 10 minutes, with `mailbeacon serve` running:")
    print(link)
    return 0

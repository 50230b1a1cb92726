"""The mailbox registry: which mailbox each user sends from, its credentials encrypted at rest."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, case, func, select, update

from outreach.gmail import GmailMailbox
from outreach.mailbox import Mailbox
from outreach.maildir import MaildirMailbox
from outreach.oauth import OAuthSettings, check_configured, google_credentials
from outreach.outlook import GraphTokens, OutlookMailbox
from outreach.smtp import SmtpMailbox, SmtpSettings
from store.crypto import CredentialCipher, CredentialsUnreadable
from store.schema import mailboxes, users

PROVIDERS = ("gmail", "outlook", "smtp", "maildir")

# Stores a mailbox's renewed credentials: (mailbox id, the whole new credentials).
CredentialKeeper = Callable[[int, Mapping[str, Any]], None]


@dataclass(frozen=True)
class MailboxInfo:
    """A mailbox as `mailbeacon status` shows it: no secrets."""

    id: int
    provider: str
    address: str
    owner_email: str | None
    is_default: bool
    connected_at: datetime


def save_mailbox(
    connection: Connection,
    *,
    provider: str,
    address: str,
    owner_user_id: int | None,
    credentials: Mapping[str, Any],
    cipher: CredentialCipher,
    make_default: bool = False,
) -> int:
    """Store (or replace, by address) a mailbox and its credentials, encrypted."""
    if provider not in PROVIDERS:
        raise ValueError(f"unknown mailbox provider {provider!r}")
    address = address.strip().lower()
    values: dict[str, Any] = {
        "provider": provider,
        "owner_user_id": owner_user_id,
        "credentials": cipher.encrypt(dict(credentials)),
    }
    if make_default:
        connection.execute(
            update(mailboxes)
            .where(mailboxes.c.is_default, func.lower(mailboxes.c.address) != address)
            .values(is_default=False)
        )
        values["is_default"] = True
    found = connection.execute(
        update(mailboxes)
        .where(func.lower(mailboxes.c.address) == address)
        .values(
            # A Gmail historyId means nothing to Graph: a new provider syncs from scratch.
            sync_cursor=case(
                (mailboxes.c.provider == provider, mailboxes.c.sync_cursor), else_=None
            ),
            **values,
        )
        .returning(mailboxes.c.id)
    ).scalar()
    if found is None:
        found = connection.execute(
            mailboxes.insert().values(address=address, **values).returning(mailboxes.c.id)
        ).scalar_one()
    return int(found)


def credential_keeper(engine: Engine, cipher: CredentialCipher) -> CredentialKeeper:
    """Renewed credentials (Outlook's rotated refresh token) replace the stored ones, encrypted,
    as soon as they arrive: a send-out that stops halfway has kept them all the same."""

    def keep(mailbox_id: int, credentials: Mapping[str, Any]) -> None:
        with engine.begin() as connection:
            connection.execute(
                update(mailboxes)
                .where(mailboxes.c.id == mailbox_id)
                .values(credentials=cipher.encrypt(dict(credentials)))
            )

    return keep


def mailbox_for_user(
    connection: Connection,
    user_id: int,
    cipher: CredentialCipher,
    *,
    oauth: OAuthSettings,
    maildir_folder: Path,
    address: str,
    keep_credentials: CredentialKeeper,
) -> Mailbox:
    """The user's own mailbox (the one connected last), else the default mailbox, else the
    embedded Maildir one sending as `address`."""
    own = connection.execute(
        select(mailboxes)
        .where(mailboxes.c.owner_user_id == user_id)
        .order_by(mailboxes.c.id.desc())
        .limit(1)
    ).first()
    row = (
        own
        or connection.execute(
            select(mailboxes).where(mailboxes.c.is_default).order_by(mailboxes.c.id.desc()).limit(1)
        ).first()
    )
    if row is None:
        return MaildirMailbox(maildir_folder, address)
    try:
        credentials = cipher.decrypt(row.credentials) if row.credentials is not None else {}
    except CredentialsUnreadable as exc:
        raise CredentialsUnreadable(f"{row.address} ({row.provider}): {exc}") from None
    return open_mailbox(
        row.id,
        row.provider,
        row.address,
        credentials,
        oauth=oauth,
        maildir_folder=maildir_folder,
        keep_credentials=keep_credentials,
    )


def open_mailbox(
    mailbox_id: int,
    provider: str,
    address: str,
    credentials: Mapping[str, Any],
    *,
    oauth: OAuthSettings,
    maildir_folder: Path,
    keep_credentials: CredentialKeeper,
) -> Mailbox:
    """The client for one stored mailbox. Nothing is fetched yet: tokens come on first use."""
    if provider == "gmail":
        check_configured(oauth, provider)
        # No access token: it is fetched with the refresh token on the first request.
        token = google_credentials({"refresh_token": credentials["refresh_token"]}, oauth)
        return GmailMailbox(address, token, api_endpoint=oauth.gmail_api_endpoint or None)
    if provider == "outlook":
        check_configured(oauth, provider)
        tokens = GraphTokens(
            oauth.microsoft_client_id,
            oauth.microsoft_client_secret,
            refresh_token=credentials["refresh_token"],
            address=address,
            tenant=oauth.microsoft_tenant,
            authority_host=oauth.microsoft_authority_host,
            on_new_refresh_token=lambda token: keep_credentials(
                mailbox_id, {**credentials, "refresh_token": token}
            ),
        )
        return OutlookMailbox(address, tokens, base_url=oauth.graph_url)
    if provider == "smtp":
        return SmtpMailbox(address, SmtpSettings(**credentials))
    return MaildirMailbox(Path(credentials.get("folder") or maildir_folder), address)


def list_mailboxes(connection: Connection) -> list[MailboxInfo]:
    query = (
        select(
            mailboxes.c.id,
            mailboxes.c.provider,
            mailboxes.c.address,
            users.c.email.label("owner_email"),
            mailboxes.c.is_default,
            mailboxes.c.created_at.label("connected_at"),
        )
        .select_from(mailboxes.outerjoin(users, users.c.id == mailboxes.c.owner_user_id))
        .order_by(mailboxes.c.address)
    )
    return [MailboxInfo(**row._asdict()) for row in connection.execute(query)]


def reencrypt_mailboxes(connection: Connection, cipher: CredentialCipher) -> int:
    """Encrypt every stored credential with the first key (after a new key was put first), so
    the old key can then be removed. Returns how many were re-encrypted."""
    rows = connection.execute(
        select(mailboxes.c.id, mailboxes.c.address, mailboxes.c.credentials).where(
            mailboxes.c.credentials.isnot(None)
        )
    ).all()
    for row in rows:
        try:
            rotated = cipher.rotate(row.credentials)
        except CredentialsUnreadable as exc:
            raise CredentialsUnreadable(f"{row.address}: {exc}") from None
        connection.execute(
            update(mailboxes).where(mailboxes.c.id == row.id).values(credentials=rotated)
        )
    return len(rows)


def set_default_mailbox(connection: Connection, address: str) -> bool:
    """Make the mailbox with this address the default (none, for an empty address); False when
    no mailbox with that address is connected."""
    wanted = address.strip().lower()
    connection.execute(
        update(mailboxes).values(is_default=func.lower(mailboxes.c.address) == wanted)
    )
    if not wanted:
        return True
    found = connection.scalar(
        select(func.count()).select_from(mailboxes).where(func.lower(mailboxes.c.address) == wanted)
    )
    return bool(found)

"""The mailbox registry on SQLite and PostgreSQL: encrypted credentials, which mailbox a user
sends from, and the whole connect-then-send loop against the fake providers."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Connection, Engine, select, update

from outreach import accounts
from outreach.accounts import (
    MailboxInfo,
    credential_keeper,
    list_mailboxes,
    mailbox_for_user,
    reencrypt_mailboxes,
    save_mailbox,
    set_default_mailbox,
)
from outreach.gmail import GmailMailbox
from outreach.maildir import MaildirMailbox, build_message
from outreach.oauth import OAuthError, OAuthSettings, SignIn, finish_sign_in
from outreach.outlook import GraphTokens, OutlookMailbox
from outreach.smtp import SmtpMailbox, SmtpSettings
from store.crypto import CredentialCipher, CredentialsUnreadable
from store.schema import mailboxes, users
from tests.fakes.gmail import FakeGmail
from tests.fakes.graph import FakeGraph, FakeIdentity
from tests.fakes.oauth import (
    GMAIL_REDIRECT,
    GMAIL_TOKEN,
    OAUTH,
    OUTLOOK_REDIRECT,
    FakeGoogle,
    FakeMicrosoft,
)

KEY_AT_REST = Fernet.generate_key().decode()
CIPHER = CredentialCipher([KEY_AT_REST])
REFRESH_TOKEN = "1//0g-the-secret-refresh-token"
SMTP = SmtpSettings(host="smtp.us.example", port=465, security="tls", username="u", password="pw")
CREDENTIALS: dict[str, dict[str, Any]] = {
    "gmail": {"refresh_token": REFRESH_TOKEN, "scopes": ["gmail.send"]},
    "outlook": {"refresh_token": REFRESH_TOKEN},
    "smtp": asdict(SMTP),
}
CLIENTS: dict[str, type[GmailMailbox | OutlookMailbox | SmtpMailbox]] = {
    "gmail": GmailMailbox,
    "outlook": OutlookMailbox,
    "smtp": SmtpMailbox,
}


@pytest.fixture
def db(engine: Engine) -> Iterator[Connection]:
    with engine.begin() as connection:
        yield connection


def _user(connection: Connection, email: str) -> int:
    return int(
        connection.execute(users.insert().values(email=email).returning(users.c.id)).scalar_one()
    )


def _save(connection: Connection, provider: str, address: str, owner: int | None, **kw: Any) -> int:
    return save_mailbox(
        connection,
        provider=provider,
        address=address,
        owner_user_id=owner,
        credentials=CREDENTIALS[provider],
        cipher=CIPHER,
        **kw,
    )


def _mailbox_for(
    connection: Connection,
    user_id: int,
    address: str,
    tmp: Path,
    *,
    oauth: OAuthSettings = OAUTH,
    cipher: CredentialCipher = CIPHER,
) -> Any:
    return mailbox_for_user(
        connection,
        user_id,
        cipher,
        oauth=oauth,
        maildir_folder=tmp,
        address=address,
        keep_credentials=credential_keeper(connection.engine, cipher),
    )


def _close(mailbox: Any) -> None:
    if hasattr(mailbox, "close"):
        mailbox.close()


def test_with_nothing_connected_everyone_sends_through_the_maildir(
    db: Connection, tmp_path: Path
) -> None:
    maria = _user(db, "maria@us.example")
    box = _mailbox_for(db, maria, "maria@us.example", tmp_path)
    assert isinstance(box, MaildirMailbox)
    assert (box.folder, box.address) == (tmp_path, "maria@us.example")


@pytest.mark.parametrize("provider", ["gmail", "outlook", "smtp"])
def test_the_owner_sends_from_their_own_mailbox_and_others_from_the_default(
    db: Connection, tmp_path: Path, provider: str
) -> None:
    maria, jonas = _user(db, "maria@us.example"), _user(db, "jonas@us.example")
    _save(db, provider, "Maria@US.example", maria)

    own = _mailbox_for(db, maria, "maria@us.example", tmp_path)
    assert isinstance(own, CLIENTS[provider]) and own.address == "maria@us.example"
    _close(own)
    # Maria's mailbox is hers: Jonas falls back to the Maildir until there is a default.
    assert isinstance(_mailbox_for(db, jonas, "jonas@us.example", tmp_path), MaildirMailbox)

    _save(db, provider, "team@us.example", None, make_default=True)
    shared = _mailbox_for(db, jonas, "jonas@us.example", tmp_path)
    assert isinstance(shared, CLIENTS[provider]) and shared.address == "team@us.example"
    _close(shared)


def test_an_smtp_mailbox_keeps_its_server_settings(db: Connection, tmp_path: Path) -> None:
    maria = _user(db, "maria@us.example")
    _save(db, "smtp", "maria@us.example", maria)
    box = _mailbox_for(db, maria, "maria@us.example", tmp_path)
    assert isinstance(box, SmtpMailbox) and box._settings == SMTP


def test_a_user_with_several_mailboxes_sends_from_the_one_connected_last(
    db: Connection, tmp_path: Path
) -> None:
    maria = _user(db, "maria@us.example")
    _save(db, "outlook", "maria@us.example", maria)
    _save(db, "smtp", "maria@smtp.us.example", maria)
    assert _mailbox_for(db, maria, "maria@us.example", tmp_path).address == "maria@smtp.us.example"


def test_saving_an_address_again_replaces_it(db: Connection) -> None:
    maria, jonas = _user(db, "maria@us.example"), _user(db, "jonas@us.example")
    first = _save(db, "gmail", "maria@us.example", maria)
    db.execute(update(mailboxes).values(sync_cursor="12345"))
    again = save_mailbox(
        db,
        provider="gmail",
        address=" MARIA@us.example ",
        owner_user_id=jonas,
        credentials={"refresh_token": "1//0g-newer"},
        cipher=CIPHER,
    )
    assert again == first
    [row] = db.execute(select(mailboxes)).all()
    assert (row.address, row.owner_user_id, row.sync_cursor) == ("maria@us.example", jonas, "12345")
    assert CIPHER.decrypt(row.credentials) == {"refresh_token": "1//0g-newer"}
    # Another provider's cursor means nothing to the new one: it syncs from the start.
    _save(db, "outlook", "maria@us.example", jonas)
    [row] = db.execute(select(mailboxes)).all()
    assert (row.provider, row.sync_cursor) == ("outlook", None)


def test_there_is_one_default_mailbox(db: Connection) -> None:
    first = _save(db, "smtp", "team@us.example", None, make_default=True)
    second = _save(db, "smtp", "sales@us.example", None, make_default=True)
    _save(db, "smtp", "sales@us.example", None)  # re-saving keeps the flag
    defaults = db.execute(select(mailboxes.c.id).where(mailboxes.c.is_default)).scalars().all()
    assert defaults == [second] and first != second


def test_credentials_are_never_stored_in_clear(db: Connection) -> None:
    maria = _user(db, "maria@us.example")
    for provider in ("gmail", "smtp"):
        _save(db, provider, f"{provider}@us.example", maria)
    for stored in db.execute(select(mailboxes.c.credentials)).scalars():
        assert isinstance(stored, bytes)
        for secret in (REFRESH_TOKEN, "refresh_token", "smtp.us.example", '"pw"'):
            assert secret.encode() not in stored


def test_the_list_shows_owners_and_no_secrets(db: Connection) -> None:
    maria = _user(db, "maria@us.example")
    gmail = _save(db, "gmail", "maria@us.example", maria)
    team = _save(db, "smtp", "team@us.example", None, make_default=True)
    listed = list_mailboxes(db)
    assert [(m.id, m.provider, m.address, m.owner_email, m.is_default) for m in listed] == [
        (gmail, "gmail", "maria@us.example", "maria@us.example", False),
        (team, "smtp", "team@us.example", None, True),
    ]
    assert all(isinstance(m, MailboxInfo) and m.connected_at.tzinfo for m in listed)
    assert REFRESH_TOKEN not in repr(listed)


def test_credentials_under_a_lost_key_name_the_mailbox_and_the_fix(
    db: Connection, tmp_path: Path
) -> None:
    maria = _user(db, "maria@us.example")
    _save(db, "gmail", "maria@us.example", maria)
    lost = CredentialCipher([Fernet.generate_key().decode()])
    with pytest.raises(CredentialsUnreadable) as raised:
        _mailbox_for(db, maria, "maria@us.example", tmp_path, cipher=lost)
    assert str(raised.value).startswith("maria@us.example (gmail): the stored mailbox credentials")
    assert "secrets.encryption_keys" in str(raised.value)


def test_rotating_the_key_reencrypts_every_mailbox(db: Connection) -> None:
    _save(db, "gmail", "maria@us.example", None)
    _save(db, "smtp", "team@us.example", None)
    new = Fernet.generate_key().decode()
    assert reencrypt_mailboxes(db, CredentialCipher([new, KEY_AT_REST])) == 2
    # The old key can go now.
    new_only = CredentialCipher([new])
    stored = db.execute(select(mailboxes.c.credentials).order_by(mailboxes.c.id)).scalars()
    assert [new_only.decrypt(token) for token in stored] == [
        CREDENTIALS["gmail"],
        CREDENTIALS["smtp"],
    ]


def test_a_connected_mailbox_needs_the_app_credentials_in_config(
    db: Connection, tmp_path: Path
) -> None:
    maria = _user(db, "maria@us.example")
    _save(db, "outlook", "maria@us.example", maria)
    with pytest.raises(OAuthError, match=r"set oauth\.microsoft_client_secret in config\.yaml"):
        _mailbox_for(
            db,
            maria,
            "maria@us.example",
            tmp_path,
            oauth=replace(OAUTH, microsoft_client_secret=""),
        )


# Connect, then send: the credentials stored are the ones that work.


def test_a_connected_gmail_mailbox_sends(db: Connection, tmp_path: Path) -> None:
    maria = _user(db, "maria@us.example")
    google = FakeGoogle()
    with google.serve() as token_uri, FakeGmail("maria@us.example", GMAIL_TOKEN) as gmail:
        settings = replace(OAUTH, google_token_uri=token_uri, gmail_api_endpoint=gmail.url)
        sign_in = SignIn("a-sign-in", maria, "gmail", "maria@us.example")
        connected = finish_sign_in(settings, sign_in, google.issue_code(), GMAIL_REDIRECT)
        save_mailbox(
            db,
            provider=connected.provider,
            address=connected.address,
            owner_user_id=sign_in.user_id,
            credentials=connected.credentials,
            cipher=CIPHER,
        )
        box = _mailbox_for(db, maria, "x@us.example", tmp_path, oauth=settings)
        assert isinstance(box, GmailMailbox)
        with box:
            box.send(_message("maria@us.example"))
        [sent] = gmail.sent()
        assert sent["Subject"] == "Renewal"
    # The mailbox got its access token by redeeming the refresh token that was stored.
    redeem = google.forms[-1]
    assert redeem["grant_type"] == "refresh_token"
    assert redeem["refresh_token"] == connected.credentials["refresh_token"]


def test_a_connected_outlook_mailbox_sends_and_keeps_the_newest_refresh_token(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine.begin() as connection:
        maria = _user(connection, "maria@us.example")
    identity = FakeIdentity("maria@us.example")
    microsoft, graph = FakeMicrosoft(identity), FakeGraph(identity)
    sign_in = SignIn("a-sign-in", maria, "outlook", "maria@us.example")
    connected = finish_sign_in(
        OAUTH,
        sign_in,
        microsoft.issue_code(),
        OUTLOOK_REDIRECT,
        http_client=microsoft.http_client(),
    )
    with engine.begin() as connection:
        save_mailbox(
            connection,
            provider=connected.provider,
            address=connected.address,
            owner_user_id=sign_in.user_id,
            credentials=connected.credentials,
            cipher=CIPHER,
        )
    # The clients as the registry builds them, only talking to the fakes.
    monkeypatch.setattr(
        accounts, "GraphTokens", functools.partial(GraphTokens, http_client=identity.http_client())
    )
    monkeypatch.setattr(
        accounts, "OutlookMailbox", functools.partial(OutlookMailbox, transport=graph.transport())
    )

    def send() -> None:
        with engine.connect() as connection:
            box = _mailbox_for(connection, maria, "x@us.example", tmp_path)
        box.send(_message("maria@us.example"))
        box.close()

    def stored_refresh_token() -> str:
        with engine.connect() as connection:
            stored = connection.scalars(select(mailboxes.c.credentials)).one()
        return str(CIPHER.decrypt(stored)["refresh_token"])

    first = connected.credentials["refresh_token"]
    send()
    [sent] = graph.sent()
    assert sent["Subject"] == "Renewal"
    redeem = [request for request in identity.requests if request.method == "POST"][-1]
    assert f"refresh_token={first}" in redeem.content.decode()
    # Microsoft answered with a new refresh token: it is stored (encrypted) in place of the first.
    newest = stored_refresh_token()
    assert newest != first and newest in identity.refresh_tokens
    # 90 days on, the first has expired; the mailbox still sends, from the stored one.
    identity.expire_refresh_token(first)
    send()
    assert len(graph.sent()) == 2
    assert stored_refresh_token() not in (first, newest)


def _message(sender: str) -> Any:
    return build_message(
        sender=sender, to=["ann@customer.example"], subject="Renewal", html="<p>Hi</p>", text="Hi"
    )


def test_config_names_the_default_mailbox(db: Connection, tmp_path: Path) -> None:
    jonas = _user(db, "jonas@us.example")
    _save(db, "smtp", "team@us.example", None)
    _save(db, "smtp", "sales@us.example", None, make_default=True)
    assert set_default_mailbox(db, "Team@us.example")
    shared = _mailbox_for(db, jonas, "jonas@us.example", tmp_path)
    assert shared.address == "team@us.example"
    assert not set_default_mailbox(db, "nobody@us.example")  # not connected: said, no default
    assert isinstance(_mailbox_for(db, jonas, "jonas@us.example", tmp_path), MaildirMailbox)
    assert set_default_mailbox(db, "")

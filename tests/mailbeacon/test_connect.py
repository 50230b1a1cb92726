"""Connecting a mailbox: the link from `mailbeacon connect`, and the server's callback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.users import UserSettings, sync_config_users
from mailbeacon.cli import main
from mailbeacon.serve import free_port, running_in_thread, uvicorn_config
from outreach.accounts import credential_keeper, mailbox_for_user
from outreach.gmail import GmailMailbox
from outreach.oauth import make_state
from store.clock import utcnow
from store.crypto import CredentialCipher
from store.schema import mailboxes, users
from tests.conftest import settings_for
from tests.fakes.gmail import FakeGmail

ME = "you@yourcompany.example"  # the shipped config's user


def test_connect_needs_the_oauth_client_configured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILBEACON__DATA_DIR", str(tmp_path))
    assert main(["connect", "gmail", "--as", ME]) == 1
    err = capsys.readouterr().err
    assert "set oauth.google_client_id and oauth.google_client_secret" in err


def test_connect_prints_a_signed_sign_in_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILBEACON__DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MAILBEACON__OAUTH__GOOGLE_CLIENT_ID", "client-123")
    monkeypatch.setenv("MAILBEACON__OAUTH__GOOGLE_CLIENT_SECRET", "secret")
    assert main(["connect", "gmail", "--as", ME]) == 0
    link = capsys.readouterr().out.splitlines()[-1]
    query = parse_qs(urlsplit(link).query)
    assert link.startswith("https://accounts.google.com/o/oauth2/v2/auth?")
    assert query["client_id"] == ["client-123"]
    assert query["redirect_uri"] == ["http://127.0.0.1:8025/oauth/google/callback"]
    assert query["login_hint"] == [ME] and query["state"][0]


@pytest.fixture
def google_token_endpoint() -> Iterator[str]:
    async def token(request: Request) -> JSONResponse:
        form = parse_qs((await request.body()).decode())
        if form.get("code") != ["good-code"]:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        return JSONResponse(
            {
                "access_token": "fake-token",
                "refresh_token": "refresh-me",
                "expires_in": 3600,
                "scope": "https://www.googleapis.com/auth/gmail.send "
                "https://www.googleapis.com/auth/gmail.readonly",
            }
        )

    port = free_port()
    app = Starlette(routes=[Route("/token", token, methods=["POST"])])
    with running_in_thread(uvicorn.Config(app, port=port, log_level="warning")):
        yield f"http://127.0.0.1:{port}/token"


def test_the_callback_connects_the_users_gmail(
    engine: Engine, db_url: str, tmp_path: Path, google_token_endpoint: str
) -> None:
    with FakeGmail(address="alex@gmail.example") as gmail:
        port = free_port()
        settings, _ = settings_for(
            tmp_path,
            DATABASE__URL=db_url,
            SERVER__PORT=str(port),
            OAUTH__GOOGLE_CLIENT_ID="client-123",
            OAUTH__GOOGLE_CLIENT_SECRET="secret",
            OAUTH__GOOGLE_TOKEN_URI=google_token_endpoint,
            OAUTH__GMAIL_API_ENDPOINT=gmail.url,
        )
        with engine.begin() as connection:
            sync_config_users(connection, [UserSettings("alex@us.example", "Alex")])
            alex = connection.scalar(select(users.c.id))
        assert alex is not None
        key = settings.tracking.signing_keys[0]
        config = uvicorn_config(settings, engine, "127.0.0.1", port, log_level="warning")
        with running_in_thread(config), httpx.Client(base_url=f"http://127.0.0.1:{port}") as web:
            state = make_state(key, alex, "gmail", utcnow())
            bad = web.get("/oauth/google/callback", params={"state": state, "code": "<b>bad</b>"})
            assert bad.status_code == 400 and "<b>" not in bad.text
            forged = web.get("/oauth/google/callback", params={"state": "x" + state, "code": "c"})
            assert forged.status_code == 400 and "expired or was tampered with" in forged.text
            assert web.get("/oauth/elsewhere/callback").status_code == 404
            page = web.get("/oauth/google/callback", params={"state": state, "code": "good-code"})
            assert page.status_code == 200, page.text
            assert "Connected alex@gmail.example (Google)" in page.text
            assert page.headers["referrer-policy"] == "no-referrer"
        cipher = CredentialCipher(settings.secrets.encryption_keys)
        with engine.connect() as connection:
            row = connection.execute(select(mailboxes)).one()
            assert (row.provider, row.address, row.owner_user_id) == (
                "gmail",
                "alex@gmail.example",
                alex,
            )
            assert b"refresh-me" not in row.credentials  # encrypted at rest
            box = mailbox_for_user(
                connection,
                alex,
                cipher,
                oauth=settings.oauth,
                maildir_folder=tmp_path / "Maildir",
                address="alex@us.example",
                keep_credentials=credential_keeper(engine, cipher),
            )
        assert isinstance(box, GmailMailbox)

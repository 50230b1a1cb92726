"""Connecting a mailbox through the real server: the link from `/beacon connect` (or
`mailbeacon connect`) opened in a browser, Google's sign-in (the fake, with PKCE), and the
callback, which connects the sign-in's address once, for the browser that opened the link."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, func, select

from bot.context import CommandFailed
from bot.registry import run_text
from bot.users import UserSettings, find_user, sync_config_users
from mailbeacon.cli import main
from mailbeacon.context import command_context
from mailbeacon.serve import free_port, running_in_thread
from mailbeacon.server import create_app
from mailbeacon.settings import Settings
from outreach.accounts import credential_keeper, mailbox_for_user
from outreach.gmail import GmailMailbox
from outreach.oauth import COOKIE, code_challenge
from store.clock import utcnow
from store.crypto import CredentialCipher
from store.engine import DatabaseSettings, make_engine
from store.schema import mailboxes, sign_ins, users
from tests.conftest import settings_for
from tests.fakes.gmail import FakeGmail
from tests.fakes.oauth import GMAIL_TOKEN, OAUTH, FakeGoogle

ME = "you@yourcompany.example"  # the shipped config's user
ALEX, BOSS = "alex@us.example", "boss@us.example"


def test_connect_needs_the_oauth_client_configured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILBEACON__DATA_DIR", str(tmp_path))
    assert main(["connect", "gmail", "--as", ME]) == 1
    err = capsys.readouterr().err
    assert "set oauth.google_client_id and oauth.google_client_secret" in err


def test_connect_prints_a_sign_in_link_to_this_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILBEACON__DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MAILBEACON__OAUTH__GOOGLE_CLIENT_ID", "client-123")
    monkeypatch.setenv("MAILBEACON__OAUTH__GOOGLE_CLIENT_SECRET", "secret")
    assert main(["connect", "gmail", "--as", ME]) == 0
    out = capsys.readouterr().out
    assert "`mailbeacon serve` must be running" in out
    assert f"sign in to Google as {ME}. It works once, in one browser" in out
    link = out.splitlines()[-1]
    match = re.fullmatch(r"http://127\.0\.0\.1:8025/connect/([A-Za-z0-9_-]{43,})", link)
    assert match is not None, link
    engine = make_engine(DatabaseSettings(url=f"sqlite:///{tmp_path / 'mailbeacon.db'}"))
    with engine.connect() as connection:
        row = connection.execute(select(sign_ins, users.c.email).join(users)).one()
    engine.dispose()
    assert (row.id, row.provider, row.address, row.email) == (match[1], "gmail", ME, ME)
    assert row.code_verifier and row.cookie_hash is None and row.used_at is None


class Server:
    """The server with Google's OAuth client configured, Google and Gmail faked, a clock to
    move, and the users Alex (a member) and Boss (an admin)."""

    def __init__(self, settings: Settings, engine: Engine, google: FakeGoogle, gmail: FakeGmail):
        self.settings, self.engine, self.google, self.gmail = settings, engine, google, gmail
        self.now = utcnow()

    def clock(self) -> datetime:
        return self.now

    def link(self, who: str, text: str = "connect gmail") -> str:
        """The link `/beacon <text>` gives `who`."""
        with self.engine.connect() as connection:
            user = find_user(connection, who)
        assert user is not None
        context = command_context(self.settings, self.engine, user, self.clock)
        return str(run_text(text, context).data["link"])

    def open(self, browser: httpx.Client, link: str) -> str:
        """Open the link, sign in at Google: where Google sends the browser back."""
        opened = browser.get(link)
        assert opened.status_code == 302, opened.text
        return self.google.sign_in(opened.headers["location"])

    def connected(self) -> list[tuple[str, str, int]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(mailboxes.c.provider, mailboxes.c.address, mailboxes.c.owner_user_id)
            )
            return [tuple(row) for row in rows]

    def user_id(self, who: str) -> int:
        with self.engine.connect() as connection:
            found = connection.scalar(select(users.c.id).where(users.c.email == who))
        assert found is not None
        return int(found)


@pytest.fixture
def server(engine: Engine, db_url: str, tmp_path: Path) -> Iterator[Server]:
    google = FakeGoogle()
    with google.serve() as token_uri, FakeGmail(address=ALEX, token=GMAIL_TOKEN) as gmail:
        port = free_port()
        settings, _ = settings_for(
            tmp_path,
            DATABASE__URL=db_url,
            SERVER__PORT=str(port),  # and so tracking.base_url, where the links lead
            OAUTH__GOOGLE_CLIENT_ID=OAUTH.google_client_id,
            OAUTH__GOOGLE_CLIENT_SECRET=OAUTH.google_client_secret,
            OAUTH__GOOGLE_TOKEN_URI=token_uri,
            OAUTH__GMAIL_API_ENDPOINT=gmail.url,
        )
        with engine.begin() as connection:
            sync_config_users(
                connection, [UserSettings(ALEX, "Alex"), UserSettings(BOSS, "Boss", role="admin")]
            )
        test = Server(settings, engine, google, gmail)
        app = create_app(settings, engine, test.clock, run_jobs=False, load_hits=False)
        with running_in_thread(uvicorn.Config(app, port=port, log_level="warning", lifespan="on")):
            yield test


def _refused(page: httpx.Response, status: int, said: str) -> None:
    assert page.status_code == status, page.text
    assert said in page.text, page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["content-type"].startswith("text/html")


def test_the_link_connects_the_users_own_gmail_once(server: Server, tmp_path: Path) -> None:
    link = server.link(ALEX)
    with httpx.Client() as browser:
        opened = browser.get(link)
        assert opened.status_code == 302
        cookie = opened.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        for attribute in ("HttpOnly", "Max-Age=600", "Path=/", "SameSite=lax"):
            assert attribute in cookie
        assert "Secure" not in cookie  # http://127.0.0.1: the browser would drop it
        assert opened.headers["cache-control"] == "no-store"
        to_google = opened.headers["location"]
        query = {key: values[0] for key, values in parse_qs(urlsplit(to_google).query).items()}
        with server.engine.connect() as connection:
            sign_in = connection.execute(select(sign_ins)).one()
        assert to_google.startswith(OAUTH.google_auth_uri + "?")
        assert query["state"] == sign_in.id and link.endswith(f"/connect/{sign_in.id}")
        assert query["code_challenge"] == code_challenge(sign_in.code_verifier)
        assert query["code_challenge_method"] == "S256"
        assert query["login_hint"] == ALEX
        back = server.google.sign_in(to_google)
        page = browser.get(back)
        assert page.status_code == 200, page.text
        assert f"Connected {ALEX} (Google): emails that {ALEX} sends" in page.text
        assert page.headers["referrer-policy"] == "no-referrer"
        assert server.google.forms[0]["code_verifier"] == sign_in.code_verifier
        _refused(browser.get(back), 400, "this sign-in link was used already (it works once)")
        _refused(browser.get(link), 400, "this sign-in link was used already")
    alex = server.user_id(ALEX)
    assert server.connected() == [("gmail", ALEX, alex)]
    cipher = CredentialCipher(server.settings.secrets.encryption_keys)
    with server.engine.connect() as connection:
        stored = connection.scalar(select(mailboxes.c.credentials))
        [refresh_token] = server.google.refresh_tokens
        assert stored is not None and refresh_token.encode() not in stored  # encrypted at rest
        box = mailbox_for_user(
            connection,
            alex,
            cipher,
            oauth=server.settings.oauth,
            maildir_folder=tmp_path / "Maildir",
            address=ALEX,
            keep_credentials=credential_keeper(server.engine, cipher),
        )
    assert isinstance(box, GmailMailbox)


def test_only_the_browser_that_opened_the_link_finishes_it(server: Server) -> None:
    link = server.link(ALEX)
    with httpx.Client() as mine, httpx.Client() as other:
        back = server.open(mine, link)
        _refused(other.get(link), 403, "this sign-in link was opened in another browser")
        _refused(other.get(back), 403, "opened in another browser")  # its own cookie
        _refused(httpx.get(back), 403, "opened in another browser")  # no cookie at all
        assert server.connected() == []
        # None of that used it up.
        assert browser_finishes(mine, back)
    assert server.connected() == [("gmail", ALEX, server.user_id(ALEX))]


def browser_finishes(browser: httpx.Client, back: str) -> bool:
    page = browser.get(back)
    return page.status_code == 200 and "Connected" in page.text


def test_an_expired_link_is_refused(server: Server) -> None:
    old = server.link(ALEX)
    link = server.link(ALEX)
    with httpx.Client() as browser:
        back = server.open(browser, link)
        server.now += timedelta(minutes=10, seconds=1)
        _refused(browser.get(back), 400, "this sign-in link expired (it works for 10 minutes)")
        _refused(browser.get(old), 400, "expired")
    assert server.connected() == []


def test_another_address_is_refused_and_nothing_is_saved(server: Server) -> None:
    server.gmail.address = "alex.private@gmail.example"
    with httpx.Client() as browser:
        page = browser.get(server.open(browser, server.link(ALEX)))
    _refused(
        page,
        400,
        f"alex.private@gmail.example signed in, but this link may connect only {ALEX}",
    )
    assert "an admin can allow it" in page.text
    assert server.connected() == []


def test_an_admin_may_connect_exactly_the_address_they_name(server: Server) -> None:
    support = "support@us.example"
    server.gmail.address = support
    with httpx.Client() as browser:
        refused = browser.get(server.open(browser, server.link(BOSS)))  # Boss's own: not this
        _refused(refused, 400, f"{support} signed in, but this link may connect only {BOSS}")
        page = browser.get(server.open(browser, server.link(BOSS, f"connect gmail for {support}")))
    assert page.status_code == 200, page.text
    assert f"Connected {support} (Google): emails that {BOSS} sends" in page.text
    assert server.connected() == [("gmail", support, server.user_id(BOSS))]


def test_every_refusal_is_a_plain_escaped_page(server: Server) -> None:
    with httpx.Client() as browser:
        back = server.open(browser, server.link(ALEX))
        state = parse_qs(urlsplit(back).query)["state"][0]
        page = browser.get(back.split("?")[0], params={"state": state, "error": "<b>bad</b>"})
        _refused(page, 400, "Google sign-in failed (&lt;b&gt;bad&lt;/b&gt;: )")
        assert "<b>" not in page.text
        _refused(browser.get(back), 400, "used already")  # the sign-in went with that answer
        callback = back.split("?")[0]
        unknown = browser.get(callback, params={"state": "x" + state, "code": "c"})
        _refused(unknown, 404, "there is no such sign-in link")
        base = callback.split("/oauth/")[0]
        _refused(browser.get(f"{base}/connect/nope"), 404, "there is no such sign-in link")
        assert browser.get(f"{base}/oauth/elsewhere/callback").status_code == 404
    with server.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(mailboxes)) == 0


def test_a_provider_not_set_up_says_which_keys_to_set(server: Server) -> None:
    # Only Google is set up here: asking for an Outlook link says what to set, and makes none.
    with pytest.raises(CommandFailed) as refused:
        server.link(ALEX, "connect outlook")
    assert str(refused.value).startswith(
        "connecting outlook mailboxes is not set up: set oauth.microsoft_client_id and "
        "oauth.microsoft_client_secret in config.yaml"
    )

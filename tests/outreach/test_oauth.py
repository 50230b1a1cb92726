"""Connecting a mailbox: sign-ins (once, one browser, 10 minutes) on SQLite and PostgreSQL,
Google's (PKCE) and Microsoft's authorization-code flows against fake token endpoints, the
address check, and the Gmail profile from the fake Gmail."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import Engine, select

from bot.users import UserSettings, sync_config_users
from outreach.oauth import (
    GMAIL_SCOPES,
    OAuthError,
    OAuthSettings,
    SignIn,
    code_challenge,
    create_sign_in,
    exchange_google_code,
    exchange_microsoft_code,
    finish_sign_in,
    gmail_address,
    google_authorization_url,
    microsoft_authorization_url,
    open_sign_in,
    read_callback,
    sign_in_link,
    sign_in_url,
    use_sign_in,
)
from outreach.outlook import MsalHttpClient
from store.schema import sign_ins, users
from tests.fakes.gmail import FakeGmail
from tests.fakes.graph import (
    AUTHORITY_HOST,
    CLIENT_ID,
    FakeIdentity,
)
from tests.fakes.oauth import (
    ADDRESS,
    GMAIL_REDIRECT,
    GMAIL_TOKEN,
    NOW,
    OAUTH,
    OUTLOOK_REDIRECT,
    FakeGoogle,
    FakeMicrosoft,
    Json,
    s256,
)

STATE = "the-sign-in-id"
VERIFIER = "v" * 64
BROWSER, OTHER_BROWSER = "cookie-of-the-browser-that-opened-it", "cookie-of-another-browser"


def _query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


# Sign-ins


@pytest.fixture
def maria(engine: Engine) -> int:
    with engine.begin() as connection:
        sync_config_users(connection, [UserSettings(ADDRESS, "Maria")])
        found = connection.scalar(select(users.c.id))
    assert found is not None
    return int(found)


def _create(engine: Engine, user_id: int, provider: str = "gmail", at: datetime = NOW) -> SignIn:
    with engine.begin() as connection:
        return create_sign_in(connection, user_id, provider, "Maria@US.example ", at)


def _open(engine: Engine, sign_in_id: str, cookie: str, at: datetime = NOW) -> SignIn:
    with engine.begin() as connection:
        return open_sign_in(connection, sign_in_id, cookie, at)


def _use(
    engine: Engine, state: str, cookie: str, at: datetime = NOW, provider: str = "gmail"
) -> SignIn:
    with engine.begin() as connection:
        return use_sign_in(connection, state, provider, cookie, at)


def test_a_sign_in_is_a_random_link_for_one_address_with_a_verifier_for_google(
    engine: Engine, maria: int
) -> None:
    gmail, outlook = _create(engine, maria), _create(engine, maria, "outlook")
    assert len({gmail.id, outlook.id}) == 2
    for sign_in in (gmail, outlook):
        assert len(sign_in.id) >= 43 and sign_in.id.isascii()  # 256 bits, URL-safe
        assert (sign_in.user_id, sign_in.address) == (maria, ADDRESS)
    assert gmail.code_verifier is not None and 43 <= len(gmail.code_verifier) <= 128
    assert outlook.code_verifier is None
    assert sign_in_link("https://b.example/", gmail) == f"https://b.example/connect/{gmail.id}"
    with engine.connect() as connection:
        row = connection.execute(select(sign_ins).where(sign_ins.c.id == gmail.id)).one()
    assert (row.created_at, row.cookie_hash, row.used_at) == (NOW, None, None)


def test_the_first_browser_to_open_a_link_is_the_only_one_to_finish_it_once(
    engine: Engine, maria: int
) -> None:
    made = _create(engine, maria)
    assert _open(engine, made.id, BROWSER) == made
    assert _open(engine, made.id, BROWSER, NOW + timedelta(minutes=1)) == made  # opened again
    with pytest.raises(OAuthError, match="opened in another browser") as elsewhere:
        _open(engine, made.id, OTHER_BROWSER)
    assert elsewhere.value.status == 403
    with engine.connect() as connection:
        stored = connection.scalar(select(sign_ins.c.cookie_hash))
    assert stored is not None and BROWSER not in stored  # only a hash of the cookie
    for cookie in (OTHER_BROWSER, ""):
        with pytest.raises(OAuthError, match="opened in another browser"):
            _use(engine, made.id, cookie)
    # The refusals above left it unused: the browser that opened it finishes it, once.
    assert _use(engine, made.id, BROWSER, NOW + timedelta(minutes=9)) == made
    for again in (_use, _open):
        with pytest.raises(OAuthError, match="was used already") as used:
            again(engine, made.id, BROWSER)
        assert used.value.status == 400


@pytest.mark.parametrize(
    ("opened", "used", "state", "provider", "expected", "status"),
    [
        (True, NOW, "no-such-sign-in", "gmail", "there is no such sign-in link", 404),
        (True, NOW + timedelta(minutes=11), None, "gmail", r"expired \(it works for 10", 400),
        (True, NOW, None, "outlook", "made for gmail, not outlook: run `/beacon", 400),
        (False, NOW, None, "gmail", "opened in another browser", 403),
    ],
    ids=["unknown", "expired after opening", "other provider", "never opened"],
)
def test_a_callback_that_may_not_finish_the_sign_in_is_refused(
    engine: Engine,
    maria: int,
    opened: bool,
    used: datetime,
    state: str | None,
    provider: str,
    expected: str,
    status: int,
) -> None:
    made = _create(engine, maria)
    if opened:
        _open(engine, made.id, BROWSER)
    with pytest.raises(OAuthError, match=expected) as refused:
        _use(engine, state or made.id, BROWSER, used, provider)
    assert refused.value.status == status
    assert "/beacon connect" in str(refused.value)


def test_an_expired_link_is_refused_when_opened(engine: Engine, maria: int) -> None:
    made = _create(engine, maria, at=NOW - timedelta(minutes=10, seconds=1))
    with pytest.raises(OAuthError, match=r"^this sign-in link expired .*`/beacon connect gmail`"):
        _open(engine, made.id, BROWSER)
    with pytest.raises(OAuthError, match="there is no such sign-in link") as unknown:
        _open(engine, "x" * 43, BROWSER)
    assert unknown.value.status == 404


@pytest.mark.parametrize("state", ["", "a\x00b", "x" * 65, "é" * 43, "a/b", "a b"])
def test_what_cannot_be_a_sign_in_id_is_unknown(engine: Engine, state: str) -> None:
    for call in (_open, _use):
        with pytest.raises(OAuthError, match="there is no such sign-in link") as unknown:
            call(engine, state, BROWSER)
        assert unknown.value.status == 404


def test_two_callbacks_at_the_same_moment_finish_the_sign_in_once(
    engine: Engine, maria: int
) -> None:
    made = _create(engine, maria)
    _open(engine, made.id, BROWSER)
    start = threading.Barrier(8)

    def callback(_: int) -> str:
        start.wait()
        try:
            _use(engine, made.id, BROWSER)
        except OAuthError as exc:
            return str(exc)
        return "finished"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(callback, range(8)))
    assert outcomes.count("finished") == 1
    assert all("used already" in outcome for outcome in outcomes if outcome != "finished")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(
            {"error": "access_denied"},
            "the Google sign-in was cancelled, or mailbeacon was not allowed to send and read "
            "mail: run `/beacon connect gmail` (or `mailbeacon connect gmail --as <email>`) "
            "again and allow it",
            id="consent declined",
        ),
        pytest.param(
            {"error": "admin_policy_enforced", "error_description": "blocked by your admin"},
            "Google sign-in failed (admin_policy_enforced: blocked by your admin): run",
            id="other error",
        ),
        pytest.param({}, "Google sent no authorization code back", id="no code"),
        pytest.param({"code": ""}, "Google sent no authorization code back", id="empty code"),
    ],
)
def test_a_callback_without_a_code_says_why(query: dict[str, str], expected: str) -> None:
    with pytest.raises(OAuthError) as refused:
        read_callback("gmail", {"state": STATE, **query})
    assert str(refused.value).startswith(expected)


def test_a_callback_with_a_code_gives_it() -> None:
    assert read_callback("outlook", {"state": STATE, "code": "c"}) == "c"


# Configuration


SIGN_IN_CALLS: list[tuple[str, Callable[[OAuthSettings], object]]] = [
    ("google", lambda s: google_authorization_url(s, GMAIL_REDIRECT, STATE, VERIFIER)),
    ("google", lambda s: exchange_google_code(s, "code", GMAIL_REDIRECT, VERIFIER)),
    ("microsoft", lambda s: microsoft_authorization_url(s, OUTLOOK_REDIRECT, STATE)),
    ("microsoft", lambda s: exchange_microsoft_code(s, "code", OUTLOOK_REDIRECT)),
]


@pytest.mark.parametrize(("prefix", "call"), SIGN_IN_CALLS)
@pytest.mark.parametrize(
    ("blank", "named"),
    [
        (["client_id", "client_secret"], ["client_id", "client_secret"]),
        (["client_secret"], ["client_secret"]),
    ],
)
def test_missing_app_credentials_name_the_config_keys_to_set(
    prefix: str, call: Callable[[OAuthSettings], object], blank: list[str], named: list[str]
) -> None:
    settings = replace(OAUTH, **{f"{prefix}_{name}": "" for name in blank})
    with pytest.raises(OAuthError) as refused:
        call(settings)  # before any request: there is no network here
    keys = " and ".join(f"oauth.{prefix}_{name}" for name in named)
    assert f"is not set up: set {keys} in config.yaml" in str(refused.value)


# Google


def test_the_pkce_challenge_is_s256_of_the_verifier() -> None:
    # RFC 7636, appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert s256(verifier) == code_challenge(verifier)  # the fake Google agrees


def test_the_google_sign_in_link_asks_for_offline_send_and_read_access_with_pkce() -> None:
    url = google_authorization_url(OAUTH, GMAIL_REDIRECT, STATE, VERIFIER, ADDRESS)
    assert url.startswith("https://accounts.google.com/o/oauth2/v2/auth?")
    assert _query(url) == {
        "client_id": OAUTH.google_client_id,
        "redirect_uri": "https://beacon.example/oauth/google/callback",
        "response_type": "code",
        "scope": "https://www.googleapis.com/auth/gmail.send "
        "https://www.googleapis.com/auth/gmail.readonly",
        "access_type": "offline",
        "prompt": "consent",
        "include_granted_scopes": "true",
        "state": STATE,
        "code_challenge": code_challenge(VERIFIER),
        "code_challenge_method": "S256",
        "login_hint": ADDRESS,
    }
    bare = _query(google_authorization_url(OAUTH, GMAIL_REDIRECT, STATE, None))
    assert "login_hint" not in bare and "code_challenge" not in bare
    sign_in = SignIn(STATE, 7, "gmail", ADDRESS, VERIFIER)
    assert sign_in_url(OAUTH, sign_in, GMAIL_REDIRECT) == url


def test_a_google_code_is_exchanged_for_a_refresh_token_with_the_pkce_verifier() -> None:
    google = FakeGoogle()
    code = google.issue_code(GMAIL_REDIRECT, code_challenge(VERIFIER))
    tokens = exchange_google_code(
        OAUTH, code, GMAIL_REDIRECT, VERIFIER, transport=google.transport(), clock=lambda: NOW
    )
    assert google.forms == [
        {
            "code": code,
            "client_id": OAUTH.google_client_id,
            "client_secret": OAUTH.google_client_secret,
            "redirect_uri": GMAIL_REDIRECT,
            "grant_type": "authorization_code",
            "code_verifier": VERIFIER,
        }
    ]
    assert tokens == {
        "refresh_token": next(iter(google.refresh_tokens)),
        "access_token": GMAIL_TOKEN,
        "expires_at": "2025-03-03T09:59:59+00:00",
        "scopes": list(GMAIL_SCOPES),
    }


def _refuse(status: int, body: str) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, text=body))


def _unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.mark.parametrize(
    ("transport", "expected"),
    [
        pytest.param(
            None,  # the fake, with a code it never issued
            "Google did not accept the sign-in code (invalid_grant: Bad Request); it expires "
            "within minutes and works once: run `/beacon connect gmail` (or `mailbeacon "
            "connect gmail --as <email>`) again",
            id="invalid_grant",
        ),
        pytest.param(
            _refuse(401, '{"error": "invalid_client", "error_description": "Unauthorized"}'),
            "Google refused mailbeacon's app credentials (invalid_client: Unauthorized): check "
            "oauth.google_client_id and oauth.google_client_secret",
            id="invalid_client",
        ),
        pytest.param(
            _refuse(502, "<html>Bad Gateway</html>"),
            "Google sign-in failed (HTTP 502: no explanation)",
            id="not json",
        ),
        pytest.param(
            _refuse(200, '["not", "an", "object"]'),
            "Google sign-in failed (HTTP 200: no explanation)",
            id="not an object",
        ),
        pytest.param(
            httpx.MockTransport(_unreachable),
            "could not reach Google sign-in: ConnectError('connection refused'); try again",
            id="unreachable",
        ),
    ],
)
def test_a_refused_google_code_says_what_to_do(
    transport: httpx.BaseTransport | None, expected: str
) -> None:
    transport = transport or FakeGoogle().transport()
    with pytest.raises(OAuthError) as refused:
        exchange_google_code(
            OAUTH, "4/0AQ-never-issued", GMAIL_REDIRECT, VERIFIER, transport=transport
        )
    assert str(refused.value).startswith(expected)


@pytest.mark.parametrize(
    ("verifier", "said"),
    [(None, "Missing code verifier."), ("w" * 64, "Invalid code verifier.")],
    ids=["missing", "wrong"],
)
def test_a_google_code_needs_the_verifier_of_its_challenge(verifier: str | None, said: str) -> None:
    google = FakeGoogle()
    code = google.issue_code(GMAIL_REDIRECT, code_challenge(VERIFIER))
    with pytest.raises(OAuthError) as refused:
        exchange_google_code(OAUTH, code, GMAIL_REDIRECT, verifier, transport=google.transport())
    assert str(refused.value).startswith(
        f"Google did not accept the sign-in code (invalid_grant: {said}); it expires within "
        "minutes and works once: run `/beacon connect gmail`"
    )
    assert not google.refresh_tokens


@pytest.mark.parametrize(
    ("scope", "refused"),
    [
        (GMAIL_SCOPES[1], "send"),
        (GMAIL_SCOPES[0], "readonly"),
        ("", "send and readonly"),
    ],
)
def test_unticked_gmail_permissions_are_refused(scope: str, refused: str) -> None:
    google = FakeGoogle(scope=scope)
    with pytest.raises(OAuthError) as raised:
        exchange_google_code(
            OAUTH, google.issue_code(), GMAIL_REDIRECT, None, transport=google.transport()
        )
    assert str(raised.value).startswith(f"mailbeacon was not allowed to {refused} mail")
    assert "tick every box" in str(raised.value)


def test_a_google_answer_without_a_refresh_token_is_refused() -> None:
    body = json.dumps({"access_token": "x", "expires_in": 3599, "scope": " ".join(GMAIL_SCOPES)})
    with pytest.raises(OAuthError, match=r"^Google gave no refresh token: remove mailbeacon"):
        exchange_google_code(OAUTH, "code", GMAIL_REDIRECT, None, transport=_refuse(200, body))


@pytest.fixture
def gmail() -> Iterator[FakeGmail]:
    with FakeGmail(address=ADDRESS, token=GMAIL_TOKEN) as fake:
        yield fake


def test_the_address_comes_from_the_gmail_profile(gmail: FakeGmail) -> None:
    settings = replace(OAUTH, gmail_api_endpoint=gmail.url)
    expires_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    credentials = {"refresh_token": "1//0g", "access_token": GMAIL_TOKEN, "expires_at": expires_at}
    assert gmail_address(credentials, settings) == ADDRESS
    [asked] = gmail.requests
    assert (asked.method, asked.path) == ("GET", "/gmail/v1/users/me/profile")


def test_a_gmail_api_that_is_not_enabled_is_a_clear_error(gmail: FakeGmail) -> None:
    settings = replace(OAUTH, gmail_api_endpoint=gmail.url)
    gmail.fail_next(403, "accessNotConfigured", message="Gmail API has not been used in project 1")
    expires_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    credentials = {"refresh_token": "1//0g", "access_token": GMAIL_TOKEN, "expires_at": expires_at}
    with pytest.raises(OAuthError) as refused:
        gmail_address(credentials, settings)
    assert str(refused.value) == (
        "Gmail answered 403 accessNotConfigured: Gmail API has not been used in project 1: "
        "the mailbox could not be connected"
    )


def test_finishing_a_gmail_sign_in_gives_the_address_and_what_to_store(gmail: FakeGmail) -> None:
    google = FakeGoogle()
    settings = replace(OAUTH, gmail_api_endpoint=gmail.url)
    sign_in = SignIn(STATE, 7, "gmail", "Maria@US.example", VERIFIER)
    back = google.sign_in(sign_in_url(settings, sign_in, GMAIL_REDIRECT))
    connected = finish_sign_in(
        settings,
        sign_in,
        read_callback("gmail", _query(back)),
        GMAIL_REDIRECT,
        transport=google.transport(),
    )
    assert (connected.provider, connected.address) == ("gmail", ADDRESS)
    assert google.forms[0]["code_verifier"] == VERIFIER
    # The access token expires within the hour: only the refresh token is worth keeping.
    assert connected.credentials == {
        "refresh_token": next(iter(google.refresh_tokens)),
        "scopes": list(GMAIL_SCOPES),
    }


# Microsoft


def test_the_microsoft_sign_in_link_asks_for_mail_and_a_refresh_token() -> None:
    identity = FakeIdentity(ADDRESS)
    url = microsoft_authorization_url(
        OAUTH, OUTLOOK_REDIRECT, STATE, ADDRESS, identity.http_client()
    )
    assert url.startswith(f"{AUTHORITY_HOST}/common/oauth2/v2.0/authorize?")
    query = _query(url)
    assert set(query["scope"].split()) == {
        "https://graph.microsoft.com/Mail.Send",
        "https://graph.microsoft.com/Mail.ReadWrite",
        "offline_access",  # the refresh token; msal adds it, with openid and profile
        "openid",
        "profile",
    }
    del query["scope"]
    assert query == {
        "client_id": CLIENT_ID,
        "redirect_uri": "https://beacon.example/oauth/microsoft/callback",
        "response_type": "code",
        "state": STATE,
        "login_hint": ADDRESS,
        "prompt": "select_account",
    }
    sign_in = SignIn(STATE, 7, "outlook", ADDRESS)
    assert sign_in_url(OAUTH, sign_in, OUTLOOK_REDIRECT, http_client=identity.http_client()) == url


def test_a_microsoft_code_is_exchanged_for_a_refresh_token_and_the_address() -> None:
    microsoft = FakeMicrosoft(FakeIdentity("Maria@US.example"))
    code = microsoft.issue_code()
    tokens = exchange_microsoft_code(OAUTH, code, OUTLOOK_REDIRECT, microsoft.http_client())
    assert tokens == {"refresh_token": "rt-1", "address": ADDRESS}
    assert tokens["refresh_token"] in microsoft.identity.refresh_tokens
    [form] = microsoft.forms
    assert (form["code"], form["redirect_uri"]) == (code, OUTLOOK_REDIRECT)
    assert "offline_access" in form["scope"].split()


def test_the_email_claim_is_preferred_to_the_sign_in_name() -> None:
    claims = {"preferred_username": "maria.r@us.onmicrosoft.example", "email": ADDRESS}
    microsoft = FakeMicrosoft(FakeIdentity(ADDRESS), claims)
    tokens = exchange_microsoft_code(
        OAUTH, microsoft.issue_code(), OUTLOOK_REDIRECT, microsoft.http_client()
    )
    assert tokens["address"] == ADDRESS


@pytest.mark.parametrize(
    ("settings", "claims", "code", "expected"),
    [
        pytest.param(
            OAUTH,
            None,
            "0.AXoA-never-issued",
            "Microsoft did not accept the sign-in code (invalid_grant: AADSTS54005",
            id="invalid_grant",
        ),
        pytest.param(
            replace(OAUTH, microsoft_client_secret="expired"),
            None,
            None,
            "Microsoft refused mailbeacon's app credentials (invalid_client: AADSTS7000215: "
            "Invalid client secret.): check oauth.microsoft_client_id and "
            "oauth.microsoft_client_secret",
            id="invalid_client",
        ),
        pytest.param(
            OAUTH,
            {},
            None,
            "Microsoft did not say which mailbox signed in",
            id="no address",
        ),
        pytest.param(
            replace(OAUTH, microsoft_tenant="contoso.example"),
            None,
            None,
            "Microsoft sign-in is misconfigured (",
            id="unknown tenant",
        ),
    ],
)
def test_a_refused_microsoft_code_says_what_to_do(
    settings: OAuthSettings, claims: Json | None, code: str | None, expected: str
) -> None:
    microsoft = FakeMicrosoft(FakeIdentity(ADDRESS), claims)
    code = code or microsoft.issue_code()
    with pytest.raises(OAuthError) as refused:
        exchange_microsoft_code(settings, code, OUTLOOK_REDIRECT, microsoft.http_client())
    assert str(refused.value).startswith(expected)


def test_microsoft_out_of_reach_is_a_clear_error() -> None:
    unreachable = MsalHttpClient(httpx.Client(transport=httpx.MockTransport(_unreachable)))
    with pytest.raises(OAuthError, match=r"^could not reach Microsoft sign-in: ConnectError"):
        microsoft_authorization_url(OAUTH, OUTLOOK_REDIRECT, STATE, None, unreachable)


def test_finishing_an_outlook_sign_in_gives_the_address_and_what_to_store() -> None:
    microsoft = FakeMicrosoft(FakeIdentity(ADDRESS))
    sign_in = SignIn(STATE, 7, "outlook", ADDRESS)
    connected = finish_sign_in(
        OAUTH,
        sign_in,
        microsoft.issue_code(),
        OUTLOOK_REDIRECT,
        http_client=microsoft.http_client(),
    )
    assert (connected.provider, connected.address) == ("outlook", ADDRESS)
    assert connected.credentials == {"refresh_token": "rt-1"}


# The address


def test_only_the_address_of_the_sign_in_is_connected(gmail: FakeGmail) -> None:
    google = FakeGoogle()
    settings = replace(OAUTH, gmail_api_endpoint=gmail.url)
    sign_in = SignIn(STATE, 7, "gmail", "support@us.example", VERIFIER)
    code = google.issue_code(GMAIL_REDIRECT, code_challenge(VERIFIER))
    with pytest.raises(OAuthError) as refused:
        finish_sign_in(settings, sign_in, code, GMAIL_REDIRECT, transport=google.transport())
    assert str(refused.value) == (
        "maria@us.example signed in, but this link may connect only support@us.example: run "
        "`/beacon connect gmail` (or `mailbeacon connect gmail --as <email>`) again and sign in "
        "as support@us.example. To connect maria@us.example instead, an admin can allow it: "
        "`/beacon connect gmail for maria@us.example`"
    )


def test_an_outlook_mailbox_of_another_address_is_refused() -> None:
    microsoft = FakeMicrosoft(FakeIdentity("someone.else@us.example"))
    sign_in = SignIn(STATE, 7, "outlook", ADDRESS)
    with pytest.raises(OAuthError, match=r"^someone.else@us.example signed in, but this link"):
        finish_sign_in(
            OAUTH,
            sign_in,
            microsoft.issue_code(),
            OUTLOOK_REDIRECT,
            http_client=microsoft.http_client(),
        )

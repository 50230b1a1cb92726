"""Connecting a mailbox: signed state, Google's and Microsoft's authorization-code flows against
fake token endpoints, and the Gmail profile from the fake Gmail."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from outreach.oauth import (
    GMAIL_SCOPES,
    Callback,
    OAuthError,
    OAuthSettings,
    exchange_google_code,
    exchange_microsoft_code,
    finish_sign_in,
    gmail_address,
    google_authorization_url,
    make_state,
    microsoft_authorization_url,
    read_callback,
    read_state,
    sign_in_url,
)
from outreach.outlook import MsalHttpClient
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
    KEY,
    NOW,
    OAUTH,
    OUTLOOK_REDIRECT,
    FakeGoogle,
    FakeMicrosoft,
    Json,
)


def _query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


# State


@pytest.mark.parametrize("provider", ["gmail", "outlook"])
def test_a_state_reads_back_as_who_asked_for_which_provider(provider: str) -> None:
    state = make_state(KEY, 42, provider, NOW)
    assert state.isascii() and all(c.isalnum() or c in "-_." for c in state)
    assert read_state(KEY, state, NOW + timedelta(minutes=9)) == (42, provider)


def _flip(text: str, position: int) -> str:
    return text[:position] + ("A" if text[position] != "A" else "B") + text[position + 1 :]


STATE = make_state(KEY, 42, "gmail", NOW)
PAYLOAD, TAG = STATE.split(".")
_forged_payload = base64.urlsafe_b64encode(b"1.gmail.%d" % NOW.timestamp()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("state", "key", "at"),
    [
        pytest.param(STATE, KEY, NOW + timedelta(minutes=11), id="expired"),
        pytest.param(STATE, KEY, NOW - timedelta(minutes=11), id="from the future"),
        pytest.param(STATE, "another-key-" + "x" * 16, NOW, id="other key"),
        pytest.param(_flip(STATE, 1), KEY, NOW, id="payload changed"),
        pytest.param(_flip(STATE, len(STATE) - 2), KEY, NOW, id="tag changed"),
        pytest.param(f"{_forged_payload}.{TAG}", KEY, NOW, id="other user, same tag"),
        pytest.param(PAYLOAD, KEY, NOW, id="no tag"),
        pytest.param(STATE + ".x", KEY, NOW, id="extra part"),
        pytest.param("", KEY, NOW, id="empty"),
        pytest.param("é.é", KEY, NOW, id="not ascii"),
        pytest.param("!!!.???", KEY, NOW, id="not base64"),
    ],
)
def test_an_expired_or_tampered_state_is_refused(state: str, key: str, at: datetime) -> None:
    with pytest.raises(OAuthError) as refused:
        read_state(key, state, at)
    assert str(refused.value).startswith("this sign-in link expired or was tampered with: run")
    assert "mailbeacon connect" in str(refused.value)


def test_a_state_for_one_provider_is_refused_at_the_other_callback() -> None:
    query = {"state": make_state(KEY, 42, "outlook", NOW), "code": "c"}
    with pytest.raises(OAuthError, match="made for outlook, not gmail"):
        read_callback(KEY, "gmail", query, NOW)
    assert read_callback(KEY, "outlook", query, NOW) == Callback(42, "outlook", "c")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(
            {"error": "access_denied"},
            "the Google sign-in was cancelled, or mailbeacon was not allowed to send and read "
            "mail: run `mailbeacon connect gmail`",
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
        read_callback(KEY, "gmail", {"state": make_state(KEY, 7, "gmail", NOW), **query}, NOW)
    assert str(refused.value).startswith(expected)


def test_a_callback_checks_the_state_before_anything_else() -> None:
    with pytest.raises(OAuthError, match="expired or was tampered with"):
        read_callback(KEY, "gmail", {"state": "forged.state", "code": "4/0AQ"}, NOW)


# Configuration


SIGN_IN_CALLS: list[tuple[str, Callable[[OAuthSettings], object]]] = [
    ("google", lambda s: google_authorization_url(s, GMAIL_REDIRECT, STATE)),
    ("google", lambda s: exchange_google_code(s, "code", GMAIL_REDIRECT)),
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


def test_the_google_sign_in_link_asks_for_offline_send_and_read_access() -> None:
    url = google_authorization_url(OAUTH, GMAIL_REDIRECT, STATE, ADDRESS)
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
        "login_hint": ADDRESS,
    }
    assert "login_hint" not in _query(google_authorization_url(OAUTH, GMAIL_REDIRECT, STATE))
    assert sign_in_url(OAUTH, "gmail", GMAIL_REDIRECT, STATE, ADDRESS) == url


def test_a_google_code_is_exchanged_for_a_refresh_token() -> None:
    google = FakeGoogle()
    code = google.issue_code()
    tokens = exchange_google_code(
        OAUTH, code, GMAIL_REDIRECT, transport=google.transport(), clock=lambda: NOW
    )
    assert google.forms == [
        {
            "code": code,
            "client_id": OAUTH.google_client_id,
            "client_secret": OAUTH.google_client_secret,
            "redirect_uri": GMAIL_REDIRECT,
            "grant_type": "authorization_code",
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
            "within minutes and works once: run `mailbeacon connect gmail` again",
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
        exchange_google_code(OAUTH, "4/0AQ-never-issued", GMAIL_REDIRECT, transport=transport)
    assert str(refused.value).startswith(expected)


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
            OAUTH, google.issue_code(), GMAIL_REDIRECT, transport=google.transport()
        )
    assert str(raised.value).startswith(f"mailbeacon was not allowed to {refused} mail")
    assert "tick every box" in str(raised.value)


def test_a_google_answer_without_a_refresh_token_is_refused() -> None:
    body = json.dumps({"access_token": "x", "expires_in": 3599, "scope": " ".join(GMAIL_SCOPES)})
    with pytest.raises(OAuthError, match=r"^Google gave no refresh token: remove mailbeacon"):
        exchange_google_code(OAUTH, "code", GMAIL_REDIRECT, transport=_refuse(200, body))


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
    callback = read_callback(
        KEY, "gmail", {"state": make_state(KEY, 7, "gmail", NOW), "code": google.issue_code()}, NOW
    )
    connected = finish_sign_in(settings, callback, GMAIL_REDIRECT, transport=google.transport())
    assert (connected.provider, connected.address) == ("gmail", ADDRESS)
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
    assert (
        sign_in_url(
            OAUTH, "outlook", OUTLOOK_REDIRECT, STATE, ADDRESS, http_client=identity.http_client()
        )
        == url
    )


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
    callback = Callback(7, "outlook", microsoft.issue_code())
    connected = finish_sign_in(
        OAUTH, callback, OUTLOOK_REDIRECT, http_client=microsoft.http_client()
    )
    assert (connected.provider, connected.address) == ("outlook", ADDRESS)
    assert connected.credentials == {"refresh_token": "rt-1"}

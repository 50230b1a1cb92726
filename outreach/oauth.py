"""Connecting a Gmail or Outlook mailbox: sign-in links and the OAuth 2.0 authorization-code
flows, no web framework.

`/beacon connect` (or `mailbeacon connect`) makes a sign-in: a `sign_ins` row whose random id is
in the link and is the OAuth `state`. The first browser to open the link is the only one that
may finish it (a cookie), once, within 10 minutes, and only with the address the sign-in names.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httplib2
import httpx
import msal
from google.auth.exceptions import GoogleAuthError
from google.oauth2.credentials import Credentials
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from msal.exceptions import MsalServiceError
from sqlalchemy import Connection, select, update

from outreach.gmail import gmail_error
from outreach.outlook import SCOPES as GRAPH_SCOPES
from outreach.outlook import MsalHttpClient
from store.clock import Clock, utcnow
from store.schema import sign_ins

PROVIDERS = ("gmail", "outlook")
NAMES = {"gmail": "Google", "outlook": "Microsoft"}
GMAIL_SCOPES = (
    "https://www.googleapis.com/auth/gmail.send",
    "https://www.googleapis.com/auth/gmail.readonly",  # reply and bounce sync
)
SIGN_IN_TTL = timedelta(minutes=10)
CONNECT_PATH = "/connect/{sign_in}"
CALLBACK_PATH = "/oauth/{service}/callback"
# The callback paths are named after the sign-in service (DESIGN §5), the providers after the mail.
SERVICES = {"gmail": "google", "outlook": "microsoft"}
COOKIE = "mailbeacon_sign_in"  # marks the browser that opened a sign-in link


class OAuthError(Exception):
    """A sign-in that did not work out for a reason a user or admin can fix; says how."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status  # of the page that says so


@dataclass(frozen=True)
class OAuthSettings:
    # Gmail: an OAuth client ("Web application") in Google Cloud console, in a project with the
    # Gmail API enabled, whose authorized redirect URI is <tracking.base_url>/oauth/google/callback.
    google_client_id: str = ""
    google_client_secret: str = ""
    # Google's sign-in and token endpoints (change them only to point at a test double).
    google_auth_uri: str = "https://accounts.google.com/o/oauth2/v2/auth"
    google_token_uri: str = "https://oauth2.googleapis.com/token"
    # The Gmail API's base URL. Empty: Google's.
    gmail_api_endpoint: str = ""
    # Outlook: an app registration in Microsoft Entra ID with a client secret, the delegated
    # Graph permissions Mail.Send and Mail.ReadWrite, and the Web redirect URI
    # <tracking.base_url>/oauth/microsoft/callback (Microsoft accepts http:// only for localhost).
    microsoft_client_id: str = ""
    microsoft_client_secret: str = ""
    # Who may sign in: "common" (work, school and personal accounts), "organizations",
    # "consumers", or your own tenant's id or domain (a single-tenant app needs this).
    microsoft_tenant: str = "common"
    # Microsoft's sign-in host; a national cloud has its own (e.g. https://login.microsoftonline.us).
    microsoft_authority_host: str = "https://login.microsoftonline.com"
    # Microsoft Graph's base URL; a national cloud has its own.
    graph_url: str = "https://graph.microsoft.com/v1.0"


@dataclass(frozen=True)
class SignIn:
    """A sign-in link (a `sign_ins` row): who asked, for which provider, the one address it may
    connect, and the PKCE verifier of Google's flow."""

    id: str
    user_id: int
    provider: str
    address: str
    code_verifier: str | None = None


@dataclass(frozen=True)
class Connected:
    """A mailbox that signed in: what save_mailbox stores (the credentials, encrypted)."""

    provider: str
    address: str
    credentials: dict[str, Any]


def redirect_uri(base_url: str, provider: str) -> str:
    """Where the provider sends the browser back: the link and the code exchange must agree."""
    return base_url.rstrip("/") + CALLBACK_PATH.format(service=SERVICES[provider])


def _again(provider: str) -> str:
    return (
        f"run `/beacon connect {provider}` (or `mailbeacon connect {provider} --as <email>`) again"
    )


# -- sign-ins ------------------------------------------------------------------------------------

NO_SUCH_SIGN_IN = f"there is no such sign-in link: {_again('gmail|outlook')}"


def create_sign_in(
    connection: Connection, user_id: int, provider: str, address: str, now: datetime
) -> SignIn:
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}")
    sign_in = SignIn(
        id=secrets.token_urlsafe(32),  # 256 bits: until a browser opens it, the link is the key
        user_id=user_id,
        provider=provider,
        address=address.strip().lower(),
        code_verifier=secrets.token_urlsafe(64) if provider == "gmail" else None,
    )
    connection.execute(sign_ins.insert().values(**asdict(sign_in), created_at=now))
    return sign_in


def sign_in_link(base_url: str, sign_in: SignIn) -> str:
    return base_url.rstrip("/") + CONNECT_PATH.format(sign_in=sign_in.id)


def browser_cookie(current: str | None) -> str:
    """This browser's sign-in cookie: the one it has (two links open in one browser both
    work), else a new random one."""
    return current or secrets.token_urlsafe(32)


def open_sign_in(connection: Connection, sign_in_id: str, cookie: str, now: datetime) -> SignIn:
    """The sign-in a link names, bound to the browser with this cookie if it is the first to
    open it; OAuthError when the link is unknown, used, expired or was opened elsewhere."""
    if not cookie:
        raise ValueError("a sign-in is opened by a browser with a cookie")
    _check_id(sign_in_id)
    connection.execute(
        update(sign_ins)
        .where(sign_ins.c.id == sign_in_id, sign_ins.c.cookie_hash.is_(None))
        .values(cookie_hash=_hash(cookie))
    )
    row = _sign_in_row(connection, sign_in_id)
    return _live(row, row is not None and row.used_at is not None, cookie, now)


def use_sign_in(
    connection: Connection, state: str, provider: str, cookie: str, now: datetime
) -> SignIn:
    """The sign-in a callback's `state` names, marked used in the caller's transaction: a second
    callback with it, even at the same moment, finds it used. A refusal rolls the mark back."""
    _check_id(state)
    marked = connection.execute(
        update(sign_ins)
        .where(sign_ins.c.id == state, sign_ins.c.used_at.is_(None))
        .values(used_at=now)
    ).rowcount
    sign_in = _live(_sign_in_row(connection, state), not marked, cookie, now)
    if sign_in.provider != provider:
        raise OAuthError(
            f"this sign-in link was made for {sign_in.provider}, not {provider}: {_again(provider)}"
        )
    return sign_in


def _check_id(sign_in_id: str) -> None:
    # Ours are 43 URL-safe characters; others (with a NUL byte, say) need not reach the database.
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", sign_in_id):
        raise OAuthError(NO_SUCH_SIGN_IN, 404)


def _sign_in_row(connection: Connection, sign_in_id: str) -> Any:
    return connection.execute(select(sign_ins).where(sign_ins.c.id == sign_in_id)).first()


def _live(row: Any, used: bool, cookie: str, now: datetime) -> SignIn:
    if row is None:
        raise OAuthError(NO_SUCH_SIGN_IN, 404)
    if used:
        raise OAuthError(
            f"this sign-in link was used already (it works once): {_again(row.provider)}"
        )
    if now - row.created_at > SIGN_IN_TTL:
        raise OAuthError(
            f"this sign-in link expired (it works for 10 minutes): {_again(row.provider)}"
        )
    if (
        row.cookie_hash is None
        or not cookie
        or not hmac.compare_digest(row.cookie_hash, _hash(cookie))
    ):
        raise OAuthError(
            "this sign-in link was opened in another browser (it works only in the browser that "
            f"opened it first): {_again(row.provider)}, and open the new link in this browser",
            403,
        )
    return SignIn(row.id, row.user_id, row.provider, row.address, row.code_verifier)


def _hash(cookie: str) -> str:
    # Only a hash is stored: whoever reads the database cannot pose as the browser.
    return hashlib.sha256(cookie.encode()).hexdigest()


def read_callback(provider: str, query: Mapping[str, str]) -> str:
    """The authorization code in the query string the provider sent the browser back with."""
    error = query.get("error")
    if error == "access_denied":
        raise OAuthError(
            f"the {NAMES[provider]} sign-in was cancelled, or mailbeacon was not allowed to send "
            f"and read mail: {_again(provider)} and allow it"
        )
    if error:
        said = query.get("error_description", "")[:300]
        raise OAuthError(f"{NAMES[provider]} sign-in failed ({error}: {said}): {_again(provider)}")
    code = query.get("code")
    if not code:
        raise OAuthError(f"{NAMES[provider]} sent no authorization code back: {_again(provider)}")
    return code


def code_challenge(verifier: str) -> str:
    """PKCE's S256 challenge (RFC 7636): what the link shows of the verifier the exchange sends."""
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# -- both providers ------------------------------------------------------------------------------


def sign_in_url(
    settings: OAuthSettings, sign_in: SignIn, redirect_uri: str, *, http_client: Any = None
) -> str:
    """Where the browser that opened the link goes to sign in: the sign-in's id is the state."""
    if sign_in.provider == "gmail":
        return google_authorization_url(
            settings, redirect_uri, sign_in.id, sign_in.code_verifier, sign_in.address
        )
    return microsoft_authorization_url(
        settings, redirect_uri, sign_in.id, sign_in.address, http_client
    )


def finish_sign_in(
    settings: OAuthSettings,
    sign_in: SignIn,
    code: str,
    redirect_uri: str,
    *,
    transport: httpx.BaseTransport | None = None,
    http: httplib2.Http | None = None,
    http_client: Any = None,
) -> Connected:
    """Redeem the code and find out which mailbox signed in: the sign-in's address, else
    OAuthError (network I/O: run it off the event loop). The access token is not kept: the
    mailbox gets a fresh one when it starts."""
    if sign_in.provider == "gmail":
        tokens = exchange_google_code(
            settings, code, redirect_uri, sign_in.code_verifier, transport=transport
        )
        address = gmail_address(tokens, settings, http)
        stored = {"refresh_token": tokens["refresh_token"], "scopes": tokens["scopes"]}
        connected = Connected("gmail", address, stored)
    else:
        tokens = exchange_microsoft_code(settings, code, redirect_uri, http_client)
        connected = Connected(
            "outlook", tokens["address"], {"refresh_token": tokens["refresh_token"]}
        )
    if connected.address.lower() != sign_in.address.lower():
        raise OAuthError(
            f"{connected.address} signed in, but this link may connect only {sign_in.address}: "
            f"{_again(sign_in.provider)} and sign in as {sign_in.address}. To connect "
            f"{connected.address} instead, an admin can allow it: `/beacon connect "
            f"{sign_in.provider} for {connected.address}`"
        )
    return connected


def check_configured(settings: OAuthSettings, provider: str) -> None:
    """OAuthError naming the config keys to set when this provider's app is not configured."""
    if provider == "gmail":
        keys = {
            "oauth.google_client_id": settings.google_client_id,
            "oauth.google_client_secret": settings.google_client_secret,
        }
    else:
        keys = {
            "oauth.microsoft_client_id": settings.microsoft_client_id,
            "oauth.microsoft_client_secret": settings.microsoft_client_secret,
        }
    missing = [key for key, value in keys.items() if not value]
    if missing:
        raise OAuthError(
            f"connecting {provider} mailboxes is not set up: set {' and '.join(missing)} in "
            "config.yaml (README: Connecting a mailbox)"
        )


def _token_error(provider: str, answer: Mapping[str, Any], status: int) -> OAuthError:
    """What an error answer from a token endpoint means, and what to do about it."""
    error = str(answer.get("error") or f"HTTP {status}")
    said = f"{error}: {answer.get('error_description') or 'no explanation'}"
    name = NAMES[provider]
    if error == "invalid_grant":
        return OAuthError(
            f"{name} did not accept the sign-in code ({said}); it expires within minutes and "
            f"works once: {_again(provider)}"
        )
    if error in ("invalid_client", "unauthorized_client"):
        prefix = "google" if provider == "gmail" else "microsoft"
        return OAuthError(
            f"{name} refused mailbeacon's app credentials ({said}): check "
            f"oauth.{prefix}_client_id and oauth.{prefix}_client_secret (secrets expire)"
        )
    return OAuthError(f"{name} sign-in failed ({said}): {_again(provider)}")


# -- Google --------------------------------------------------------------------------------------


def google_authorization_url(
    settings: OAuthSettings,
    redirect_uri: str,
    state: str,
    code_verifier: str | None,
    login_hint: str | None = None,
) -> str:
    """Google's sign-in page; with a verifier, the PKCE challenge that the code is bound to."""
    check_configured(settings, "gmail")
    query = {
        "client_id": settings.google_client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": " ".join(GMAIL_SCOPES),
        "access_type": "offline",  # a refresh token: mail goes out while nobody is signed in
        "prompt": "consent",  # Google gives the refresh token again only when asked again
        "include_granted_scopes": "true",
        "state": state,
    }
    if code_verifier:
        query |= {"code_challenge": code_challenge(code_verifier), "code_challenge_method": "S256"}
    if login_hint:
        query["login_hint"] = login_hint
    return f"{settings.google_auth_uri}?{urlencode(query)}"


def exchange_google_code(
    settings: OAuthSettings,
    code: str,
    redirect_uri: str,
    code_verifier: str | None,
    *,
    transport: httpx.BaseTransport | None = None,
    clock: Clock = utcnow,
) -> dict[str, Any]:
    """{refresh_token, access_token, expires_at (ISO 8601), scopes} for a code from Google;
    the PKCE verifier of the link's challenge, if it had one."""
    check_configured(settings, "gmail")
    form = {
        "code": code,
        "client_id": settings.google_client_id,
        "client_secret": settings.google_client_secret,
        "redirect_uri": redirect_uri,
        "grant_type": "authorization_code",
    }
    if code_verifier:
        form["code_verifier"] = code_verifier
    try:
        with httpx.Client(transport=transport, timeout=30) as client:
            response = client.post(settings.google_token_uri, data=form)
    except httpx.HTTPError as exc:
        raise OAuthError(f"could not reach Google sign-in: {exc!r}; try again") from exc
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    if not response.is_success or not isinstance(answer, dict) or "error" in answer:
        raise _token_error(
            "gmail", answer if isinstance(answer, dict) else {}, response.status_code
        )
    granted = str(answer.get("scope", "")).split()
    # Google lets people untick permissions on its consent screen.
    refused = [scope.rsplit(".", 1)[1] for scope in GMAIL_SCOPES if scope not in granted]
    if refused:
        raise OAuthError(
            f"mailbeacon was not allowed to {' and '.join(refused)} mail (gmail.send is for "
            f"sending, gmail.readonly for noticing replies and bounces): {_again('gmail')} and "
            "tick every box on Google's consent screen"
        )
    if not answer.get("refresh_token"):
        raise OAuthError(
            "Google gave no refresh token: remove mailbeacon under "
            f"https://myaccount.google.com/permissions, then {_again('gmail')}"
        )
    expires_at = clock() + timedelta(seconds=int(answer.get("expires_in", 0)))
    return {
        "refresh_token": answer["refresh_token"],
        "access_token": answer.get("access_token"),
        "expires_at": expires_at.isoformat(),
        "scopes": granted,
    }


def google_credentials(credentials: Mapping[str, Any], settings: OAuthSettings) -> Credentials:
    """google-auth credentials that refresh themselves from the stored refresh token."""
    expires_at = credentials.get("expires_at")
    expiry = (  # google-auth compares naive UTC times
        datetime.fromisoformat(expires_at).astimezone(UTC).replace(tzinfo=None)
        if expires_at
        else None
    )
    return Credentials(  # type: ignore[no-untyped-call]
        token=credentials.get("access_token"),
        refresh_token=credentials["refresh_token"],
        client_id=settings.google_client_id,
        client_secret=settings.google_client_secret,
        token_uri=settings.google_token_uri,
        expiry=expiry,
    )


def gmail_address(
    credentials: Mapping[str, Any], settings: OAuthSettings, http: httplib2.Http | None = None
) -> str:
    """The address of the Gmail account these credentials are for (its profile)."""
    creds = google_credentials(credentials, settings)
    auth: dict[str, Any] = (
        {"credentials": creds} if http is None else {"http": AuthorizedHttp(creds, http=http)}
    )
    endpoint = settings.gmail_api_endpoint
    service = build(
        "gmail",
        "v1",
        static_discovery=True,
        cache_discovery=False,
        client_options={"api_endpoint": endpoint} if endpoint else None,
        **auth,
    )
    try:
        profile = service.users().getProfile(userId="me").execute(num_retries=0)
    except HttpError as exc:
        # Typically "Gmail API has not been used in project … or it is disabled", with a link.
        said = gmail_error(exc.resp.status, exc.content, None, utcnow())
        raise OAuthError(f"{said}: the mailbox could not be connected") from exc
    except (GoogleAuthError, httplib2.HttpLib2Error, OSError) as exc:
        raise OAuthError(f"could not reach Gmail: {exc!r}; try again") from exc
    finally:
        service.close()
    return str(profile["emailAddress"]).strip().lower()


# -- Microsoft -----------------------------------------------------------------------------------


def microsoft_authorization_url(
    settings: OAuthSettings,
    redirect_uri: str,
    state: str,
    login_hint: str | None = None,
    http_client: Any = None,
) -> str:
    with _msal_app(settings, http_client) as app:
        # openid, profile and offline_access (the refresh token) are added by msal itself.
        url = app.get_authorization_request_url(
            GRAPH_SCOPES,
            state=state,
            redirect_uri=redirect_uri,
            login_hint=login_hint,
            # Whoever is signed in to Microsoft in that browser may not be the mailbox meant.
            prompt=msal.Prompt.SELECT_ACCOUNT,
        )
    return str(url)


def exchange_microsoft_code(
    settings: OAuthSettings, code: str, redirect_uri: str, http_client: Any = None
) -> dict[str, Any]:
    """{refresh_token, address} for a code from Microsoft."""
    with _msal_app(settings, http_client) as app:
        try:
            result = app.acquire_token_by_authorization_code(
                code, scopes=GRAPH_SCOPES, redirect_uri=redirect_uri
            )
        except (httpx.HTTPError, MsalServiceError) as exc:
            raise OAuthError(f"could not reach Microsoft sign-in: {exc!r}; try again") from exc
    if "error" in result:
        raise _token_error("outlook", result, 400)
    claims = result.get("id_token_claims") or {}
    # `email` (when the tenant sends it) is the mailbox's SMTP address; `preferred_username` is
    # the sign-in name, the same address for nearly every account.
    address = str(claims.get("email") or claims.get("preferred_username") or "").strip().lower()
    if "@" not in address:
        raise OAuthError(
            "Microsoft did not say which mailbox signed in (no email in its ID token): sign in "
            "with the account of an Outlook mailbox"
        )
    if not result.get("refresh_token"):
        raise OAuthError(f"Microsoft gave no refresh token: {_again('outlook')}")
    return {"refresh_token": result["refresh_token"], "address": address}


@contextmanager
def _msal_app(settings: OAuthSettings, http_client: Any) -> Iterator[Any]:
    check_configured(settings, "outlook")
    own = MsalHttpClient(httpx.Client(timeout=30)) if http_client is None else None
    try:
        app = msal.ConfidentialClientApplication(
            settings.microsoft_client_id,
            client_credential=settings.microsoft_client_secret,
            authority=f"{settings.microsoft_authority_host.rstrip('/')}/{settings.microsoft_tenant}",
            instance_discovery=False,  # the authority is given whole (national cloud, fake)
            http_client=http_client or own,
        )
    except ValueError as exc:  # msal's word for an authority it cannot use
        raise OAuthError(
            f"Microsoft sign-in is misconfigured ({exc}): check oauth.microsoft_tenant and "
            "oauth.microsoft_authority_host"
        ) from exc
    except httpx.HTTPError as exc:
        raise OAuthError(f"could not reach Microsoft sign-in: {exc!r}; try again") from exc
    try:
        # msal deprecates these two calls for initiate_auth_code_flow(), whose flow (a PKCE
        # verifier and a nonce) is a dict to keep from the link to the callback; the sign-in
        # (single-use, bound to one browser, one address) does that job here. It also advises
        # response_mode=form_post, which Google has no counterpart of. The code in the query
        # string is single-use and worthless without the client secret.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="msal")
            warnings.filterwarnings("ignore", "response_mode='form_post'", module="msal")
            yield app
    finally:
        if own is not None:
            own.close()

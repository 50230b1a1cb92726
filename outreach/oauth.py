"""Connecting a Gmail or Outlook mailbox: the OAuth 2.0 authorization-code flows, no web framework.

`mailbeacon connect` (or Slack) makes the sign-in link; the server's callback route receives the
answer. The `state` carries who asked, signed and short-lived, so the two need share no session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
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

from outreach.gmail import gmail_error
from outreach.outlook import SCOPES as GRAPH_SCOPES
from outreach.outlook import MsalHttpClient
from store.clock import Clock, utcnow

PROVIDERS = ("gmail", "outlook")
NAMES = {"gmail": "Google", "outlook": "Microsoft"}
GMAIL_SCOPES = (
    "https://www.googleapis.com/auth/gmail.send",
    "https://www.googleapis.com/auth/gmail.readonly",  # reply and bounce sync
)
STATE_TTL = timedelta(minutes=10)
CALLBACK_PATH = "/oauth/{service}/callback"
# The callback paths are named after the sign-in service (DESIGN §5), the providers after the mail.
SERVICES = {"gmail": "google", "outlook": "microsoft"}


class OAuthError(Exception):
    """A sign-in that did not work out for a reason a user or admin can fix; says how."""


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
class Callback:
    """A genuine answer to one of our sign-in links."""

    user_id: int
    provider: str
    code: str


@dataclass(frozen=True)
class Connected:
    """A mailbox that signed in: what save_mailbox stores (the credentials, encrypted)."""

    provider: str
    address: str
    credentials: dict[str, Any]


def redirect_uri(base_url: str, provider: str) -> str:
    """Where the provider sends the browser back: the link and the code exchange must agree."""
    return base_url.rstrip("/") + CALLBACK_PATH.format(service=SERVICES[provider])


# -- state ---------------------------------------------------------------------------------------

STATE_INVALID = (
    "this sign-in link expired or was tampered with: run `mailbeacon connect gmail|outlook "
    "--as <email>` (or `/beacon connect`) again and use the new link within 10 minutes"
)


def make_state(signer_key: str, user_id: int, provider: str, now: datetime) -> str:
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}")
    payload = f"{user_id}.{provider}.{int(now.timestamp())}".encode()
    return f"{_b64(payload)}.{_b64(_state_tag(signer_key, payload))}"


def read_state(signer_key: str, state: str, now: datetime) -> tuple[int, str]:
    """(user id, provider) of a state made here in the last 10 minutes; OAuthError otherwise."""
    try:
        encoded_payload, encoded_tag = state.split(".")
        payload, tag = _unb64(encoded_payload), _unb64(encoded_tag)
    except ValueError:  # binascii.Error and non-ASCII text are ValueErrors too
        raise OAuthError(STATE_INVALID) from None
    if not hmac.compare_digest(tag, _state_tag(signer_key, payload)):
        raise OAuthError(STATE_INVALID)
    user_id, provider, issued = payload.decode().split(".")
    # Either way: the machine that made the link may have a clock a little ahead of ours.
    if abs(now - datetime.fromtimestamp(int(issued), UTC)) > STATE_TTL:
        raise OAuthError(STATE_INVALID)
    return int(user_id), provider


def read_callback(
    signer_key: str, provider: str, query: Mapping[str, str], now: datetime
) -> Callback:
    """The query string the provider sent the browser back with, checked."""
    user_id, asked = read_state(signer_key, query.get("state", ""), now)
    again = f"run `mailbeacon connect {provider}` (or `/beacon connect {provider}`) again"
    if asked != provider:
        raise OAuthError(f"this sign-in link was made for {asked}, not {provider}: {again}")
    error = query.get("error")
    if error == "access_denied":
        raise OAuthError(
            f"the {NAMES[provider]} sign-in was cancelled, or mailbeacon was not allowed to send "
            f"and read mail: {again} and allow it"
        )
    if error:
        said = query.get("error_description", "")[:300]
        raise OAuthError(f"{NAMES[provider]} sign-in failed ({error}: {said}): {again}")
    code = query.get("code")
    if not code:
        raise OAuthError(f"{NAMES[provider]} sent no authorization code back: {again}")
    return Callback(user_id, provider, code)


def _state_tag(key: str, payload: bytes) -> bytes:
    if not key:
        raise ValueError("a signing key is needed for sign-in states")
    # A context prefix: the same key may sign tracking tokens, which must never pass for a state.
    return hmac.new(key.encode(), b"mailbeacon oauth state\0" + payload, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- both providers ------------------------------------------------------------------------------


def sign_in_url(
    settings: OAuthSettings,
    provider: str,
    redirect_uri: str,
    state: str,
    login_hint: str | None = None,
    *,
    http_client: Any = None,
) -> str:
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}")
    if provider == "gmail":
        return google_authorization_url(settings, redirect_uri, state, login_hint)
    return microsoft_authorization_url(settings, redirect_uri, state, login_hint, http_client)


def finish_sign_in(
    settings: OAuthSettings,
    callback: Callback,
    redirect_uri: str,
    *,
    transport: httpx.BaseTransport | None = None,
    http: httplib2.Http | None = None,
    http_client: Any = None,
) -> Connected:
    """Redeem the code and find out which mailbox signed in (network I/O: run it off the event
    loop). The access token is not kept: the mailbox gets a fresh one when it starts."""
    if callback.provider == "gmail":
        tokens = exchange_google_code(settings, callback.code, redirect_uri, transport=transport)
        address = gmail_address(tokens, settings, http)
        stored = {"refresh_token": tokens["refresh_token"], "scopes": tokens["scopes"]}
        return Connected("gmail", address, stored)
    tokens = exchange_microsoft_code(settings, callback.code, redirect_uri, http_client)
    return Connected("outlook", tokens["address"], {"refresh_token": tokens["refresh_token"]})


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
            f"works once: run `mailbeacon connect {provider}` again"
        )
    if error in ("invalid_client", "unauthorized_client"):
        prefix = "google" if provider == "gmail" else "microsoft"
        return OAuthError(
            f"{name} refused mailbeacon's app credentials ({said}): check "
            f"oauth.{prefix}_client_id and oauth.{prefix}_client_secret (secrets expire)"
        )
    return OAuthError(f"{name} sign-in failed ({said}): run `mailbeacon connect {provider}` again")


# -- Google --------------------------------------------------------------------------------------


def google_authorization_url(
    settings: OAuthSettings, redirect_uri: str, state: str, login_hint: str | None = None
) -> str:
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
    if login_hint:
        query["login_hint"] = login_hint
    return f"{settings.google_auth_uri}?{urlencode(query)}"


def exchange_google_code(
    settings: OAuthSettings,
    code: str,
    redirect_uri: str,
    *,
    transport: httpx.BaseTransport | None = None,
    clock: Clock = utcnow,
) -> dict[str, Any]:
    """{refresh_token, access_token, expires_at (ISO 8601), scopes} for a code from Google."""
    check_configured(settings, "gmail")
    form = {
        "code": code,
        "client_id": settings.google_client_id,
        "client_secret": settings.google_client_secret,
        "redirect_uri": redirect_uri,
        "grant_type": "authorization_code",
    }
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
            "sending, gmail.readonly for noticing replies and bounces): run `mailbeacon connect "
            "gmail` again and tick every box on Google's consent screen"
        )
    if not answer.get("refresh_token"):
        raise OAuthError(
            "Google gave no refresh token: remove mailbeacon under "
            "https://myaccount.google.com/permissions, then run `mailbeacon connect gmail` again"
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
        raise OAuthError("Microsoft gave no refresh token: run `mailbeacon connect outlook` again")
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
        # verifier and a nonce) must be kept from the link to the callback: the CLI makes the
        # link and the server gets the answer, with no session between them. It also advises
        # response_mode=form_post, which Google has no counterpart of. The code in the query
        # string is single-use and worthless without the client secret.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="msal")
            warnings.filterwarnings("ignore", "response_mode='form_post'", module="msal")
            yield app
    finally:
        if own is not None:
            own.close()

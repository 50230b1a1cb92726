"""Google's sign-in page and token endpoint (PKCE included) and Microsoft's authorization-code
grant, for one OAuth app (the settings in OAUTH), and what a sign-in needs around them."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from outreach.oauth import GMAIL_SCOPES, OAuthSettings, redirect_uri
from outreach.outlook import MsalHttpClient
from tests.fakes.graph import (
    AUTHORITY_HOST,
    CLIENT_ID,
    CLIENT_SECRET,
    FakeIdentity,
    oauth_error,
    token_answer,
)

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
BASE_URL = "https://beacon.example"
GMAIL_REDIRECT = redirect_uri(BASE_URL, "gmail")
OUTLOOK_REDIRECT = redirect_uri(BASE_URL, "outlook")
GMAIL_TOKEN = "fake-token"  # what FakeGmail accepts
ADDRESS = "maria@us.example"
OAUTH = OAuthSettings(
    google_client_id="123-abc.apps.googleusercontent.com",
    google_client_secret="GOCSPX-fake",
    google_token_uri="https://oauth2.fake.example/token",
    microsoft_client_id=CLIENT_ID,
    microsoft_client_secret=CLIENT_SECRET,
    microsoft_authority_host=AUTHORITY_HOST,
)

Json = dict[str, Any]


@dataclass(frozen=True)
class Issued:
    """What Google binds a code to: the redirect URI and the PKCE challenge of its sign-in."""

    redirect_uri: str
    code_challenge: str | None


@dataclass
class FakeGoogle:
    """Google's token endpoint for one OAuth client: redeems each code it issued once (for the
    redirect URI it was issued to, with the verifier of its PKCE challenge) and the refresh
    tokens that came with them. `sign_in` is its sign-in page, where the person consents."""

    access_token: str = GMAIL_TOKEN
    scope: str = " ".join(GMAIL_SCOPES)
    forms: list[dict[str, str]] = field(default_factory=list)
    codes: dict[str, Issued] = field(default_factory=dict)
    refresh_tokens: set[str] = field(default_factory=set)
    _serial: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def issue_code(
        self, redirect_uri: str = GMAIL_REDIRECT, code_challenge: str | None = None
    ) -> str:
        code = f"4/0AQ-code-{next(self._serial)}"
        self.codes[code] = Issued(redirect_uri, code_challenge)
        return code

    def sign_in(self, url: str) -> str:
        """Where Google's sign-in page at `url` sends the browser once the person consents: the
        redirect URI with a code and the state."""
        query = {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
        assert url.startswith(OAUTH.google_auth_uri + "?")
        assert query["client_id"] == OAUTH.google_client_id
        challenge = query.get("code_challenge")
        if challenge is not None:
            assert query["code_challenge_method"] == "S256"
        code = self.issue_code(query["redirect_uri"], challenge)
        back = {"state": query["state"], "code": code, "scope": self.scope}
        return f"{query['redirect_uri']}?{urlencode(back)}"

    def answer(self, form: dict[str, str]) -> tuple[int, Json]:
        self.forms.append(form)
        if (form.get("client_id"), form.get("client_secret")) != (
            OAUTH.google_client_id,
            OAUTH.google_client_secret,
        ):
            return 401, {"error": "invalid_client", "error_description": "Unauthorized"}
        granted = {"access_token": self.access_token, "expires_in": 3599, "scope": self.scope}
        if form.get("grant_type") == "authorization_code":
            issued = self.codes.pop(form.get("code", ""), None)
            if issued is None:
                return 400, {"error": "invalid_grant", "error_description": "Bad Request"}
            if form.get("redirect_uri") != issued.redirect_uri:
                return 400, {"error": "redirect_uri_mismatch", "error_description": "Bad Request"}
            if issued.code_challenge is not None:
                verifier = form.get("code_verifier")
                if not verifier:
                    return 400, {
                        "error": "invalid_grant",
                        "error_description": "Missing code verifier.",
                    }
                if s256(verifier) != issued.code_challenge:
                    return 400, {
                        "error": "invalid_grant",
                        "error_description": "Invalid code verifier.",
                    }
            refresh_token = f"1//0g-refresh-{next(self._serial)}"
            self.refresh_tokens.add(refresh_token)
            return 200, {**granted, "refresh_token": refresh_token, "token_type": "Bearer"}
        if form.get("grant_type") == "refresh_token":
            if form.get("refresh_token") not in self.refresh_tokens:
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "Token has been expired or revoked.",
                }
            return 200, {**granted, "token_type": "Bearer"}
        return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            assert (request.method, str(request.url)) == ("POST", OAUTH.google_token_uri)
            status, body = self.answer(form_fields(request.content))
            return httpx.Response(status, json=body)

        return httpx.MockTransport(handle)

    @contextmanager
    def serve(self) -> Iterator[str]:
        """On loopback, for google-auth (httplib2) refreshing a token: yields its token URI."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                status, body = fake.answer(form_fields(self.rfile.read(length)))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,))
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/token"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


class FakeMicrosoft:
    """The identity platform of tests/fakes/graph.py plus the authorization-code grant: a code
    redeems once, for its redirect URI, to a refresh token FakeIdentity (and so FakeGraph) takes."""

    def __init__(self, identity: FakeIdentity, claims: Json | None = None) -> None:
        self.identity = identity
        self.claims = {"preferred_username": identity.address} if claims is None else claims
        self.codes: set[str] = set()
        self.forms: list[dict[str, str]] = []
        self._serial = itertools.count(1)

    def issue_code(self) -> str:
        code = f"0.AXoA-code-{next(self._serial)}"
        self.codes.add(code)
        return code

    def http_client(self) -> MsalHttpClient:
        return MsalHttpClient(httpx.Client(transport=httpx.MockTransport(self.handle)))

    def handle(self, request: httpx.Request) -> httpx.Response:
        form = form_fields(request.content) if request.method == "POST" else {}
        if form.get("grant_type") != "authorization_code":
            return self.identity.handle(request)
        self.forms.append(form)
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return oauth_error(401, "invalid_client", "AADSTS7000215: Invalid client secret.")
        if form.get("code") not in self.codes or form.get("redirect_uri") != OUTLOOK_REDIRECT:
            return oauth_error(
                400, "invalid_grant", "AADSTS54005: OAuth2 Authorization code was already redeemed."
            )
        self.codes.discard(form["code"])
        body = token_answer(form, "at-from-code", self.identity.grant(), self.claims)
        return httpx.Response(200, json=body)


def s256(verifier: str) -> str:
    """RFC 7636's S256, worked out here rather than taken from the code under test."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def form_fields(content: bytes) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(content.decode()).items()}

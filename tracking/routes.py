"""The tracking endpoints (DESIGN §4). Only HTTP lives here: tokens, the journal, destinations
and the rules are elsewhere. A hit is answered once it is in the journal; the database gets it
from the loader behind.

The open pixel and the click redirect are plain ASGI in front of the Starlette app: they skip
routing, middleware and request objects, which bench/tracking.py shows is most of their cost.
Everything else passes through to the app.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

from starlette.requests import Request, cookie_parser
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from store.clock import Clock
from tracking.classify import Hit, HitKind
from tracking.clean import MAX_USER_AGENT, anonymize_ip, valid_ip
from tracking.destinations import Destinations, DestinationUnavailable
from tracking.journal import Journal, JournalUnavailable
from tracking.tokens import TokenKind, TokenSigner

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# A transparent 1x1 GIF, 43 bytes.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
VIEWER_COOKIE = "mb_user"
NOT_FOUND = (
    b"This link is not valid. It may have been copied incompletely: "
    b"open it again from the email you received.\n"
)
UNAVAILABLE = b"Temporarily unavailable: please try the link again in a moment.\n"
_NO_STORE = [(b"cache-control", b"no-store, private"), (b"pragma", b"no-cache")]
_TEXT = [(b"content-type", b"text/plain; charset=utf-8"), *_NO_STORE]
_GIF = [(b"content-type", b"image/gif"), (b"content-length", b"43"), *_NO_STORE]
# What RedirectResponse leaves unquoted: a stored destination is already a valid URL.
_URL_SAFE = ":/%#?=@[]!$&'()*+,;"


class TrackingEndpoints:
    def __init__(
        self,
        app: ASGIApp,
        journal: Journal | None,
        destinations: Destinations,
        signer: TokenSigner,
        clock: Clock,
        *,
        secure_cookies: bool,
        anonymize_ip: bool,
    ) -> None:
        """`journal` None: tracking is off, and hits are not kept."""
        self.app = app
        self.journal = journal
        self.destinations = destinations
        self.signer = signer
        self.clock = clock
        self.secure_cookies = secure_cookies
        self.address = _anonymous_address if anonymize_ip else valid_ip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path: str = scope["path"]
            if path.startswith("/t/o/") and path.endswith(".gif"):
                await self.open_pixel(scope, path[5:-4])
                await send({"type": "http.response.start", "status": 200, "headers": _GIF})
                await send({"type": "http.response.body", "body": PIXEL})
                return
            if path.startswith("/t/c/"):
                await self.click(scope, send, path[5:])
                return
        await self.app(scope, receive, send)

    async def open_pixel(self, scope: Scope, token: str) -> None:
        # The answer is always the GIF, also for forged tokens or a full disk: a broken image
        # would tell the reader something is watching, and tells a forger nothing.
        claims = self.signer.verify(token, TokenKind.OPEN)
        if claims is not None:
            await self._keep(claims.id, scope, "open", None)

    async def click(self, scope: Scope, send: Send, token: str) -> None:
        claims = self.signer.verify(token, TokenKind.CLICK)
        if claims is None:
            await _respond(send, 404, _TEXT, NOT_FOUND)
            return
        try:
            destination = await self.destinations.find(claims.id, claims.link_idx)
        except DestinationUnavailable:
            # The database is down or locked and the destination is not known here yet: the
            # hit is kept, and the reader gets a quick answer to try again.
            await self._keep(claims.id, scope, "click", claims.link_idx)
            await _respond(send, 503, [*_TEXT, (b"retry-after", b"5")], UNAVAILABLE)
            return
        if destination is None:
            await _respond(send, 404, _TEXT, NOT_FOUND)
            return
        await self._keep(claims.id, scope, "click", claims.link_idx)
        if destination.url is None:  # the hidden honeypot link: only machines come here
            await _respond(send, 200, _TEXT, b"")
        else:
            # The destination comes from our own links table, never from the request.
            location = quote(destination.url, safe=_URL_SAFE).encode("latin-1")
            await _respond(send, 302, [(b"location", location), *_TEXT], b"")

    async def _keep(self, email_id: int, scope: Scope, kind: HitKind, link: int | None) -> None:
        """Into the journal, answered once it is on disk; a journal that cannot write is
        logged by the journal, and the reader is answered all the same."""
        if self.journal is not None:
            with contextlib.suppress(JournalUnavailable):
                await self.journal.append(email_id, self._hit(scope, kind, link))

    def _hit(self, scope: Scope, kind: HitKind, link_idx: int | None) -> Hit:
        agent = ""
        viewer = None
        for name, value in scope["headers"]:
            if name == b"user-agent":
                agent = value[:MAX_USER_AGENT].decode("latin-1")
            elif name == b"cookie":
                token = cookie_parser(value.decode("latin-1")).get(VIEWER_COOKIE)
                claims = self.signer.verify(token, TokenKind.USER) if token else None
                viewer = claims.id if claims else viewer
        client = scope.get("client")
        return Hit(
            kind=kind,
            at=self.clock(),
            link_idx=link_idx,
            method=scope["method"],
            user_agent=agent,
            ip=self.address(client[0]) if client else "",
            viewer_user_id=viewer,
        )

    def routes(self) -> list[Route]:
        return [Route("/t/me/{token}", self.mark_browser, methods=["GET"])]

    async def mark_browser(self, request: Request) -> Response:
        """Opens and clicks from a browser marked here count as its user's own, not the
        recipient's (the `sender` machine signal)."""
        token = request.path_params["token"]
        headers = {"Cache-Control": "no-store, private"}
        if self.signer.verify(token, TokenKind.USER) is None:
            return PlainTextResponse(NOT_FOUND.decode(), status_code=404, headers=headers)
        response = HTMLResponse(
            "<!doctype html><title>mailbeacon</title><p>This browser is now recognised as yours: "
            "your own opens and clicks of the emails you send will not be counted.</p>",
            headers=headers,
        )
        response.set_cookie(
            VIEWER_COOKIE,
            token,
            max_age=400 * 24 * 3600,
            path="/t/",
            httponly=True,
            secure=self.secure_cookies,
            samesite="none" if self.secure_cookies else "lax",
        )
        return response


async def _respond(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _anonymous_address(ip: str) -> str:
    return anonymize_ip(valid_ip(ip))

"""The tracking endpoints (DESIGN §4). Only HTTP lives here: tokens, recording and the rules
are elsewhere."""

from __future__ import annotations

import base64
import contextlib
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from store.clock import Clock
from tracking.classify import Hit, HitKind
from tracking.recorder import Recorder, RecorderUnavailable
from tracking.tokens import TokenKind, TokenSigner

# A transparent 1x1 GIF, 43 bytes.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
NO_STORE = {"Cache-Control": "no-store, private", "Pragma": "no-cache"}
VIEWER_COOKIE = "mb_user"
NOT_FOUND = (
    "This link is not valid. It may have been copied incompletely: "
    "open it again from the email you received.\n"
)


@dataclass(frozen=True)
class TrackingEndpoints:
    recorder: Recorder
    signer: TokenSigner
    clock: Clock
    secure_cookies: bool

    def routes(self) -> list[Route]:
        return [
            Route("/t/o/{token}.gif", self.open_pixel, methods=["GET"]),
            Route("/t/c/{token}", self.click, methods=["GET", "HEAD"]),
            Route("/t/me/{token}", self.mark_browser, methods=["GET"]),
        ]

    async def open_pixel(self, request: Request) -> Response:
        # Always the GIF, also for forged tokens or a database outage: a broken image would
        # tell the reader something is watching, and answers nothing useful to a forger.
        claims = self.signer.verify(request.path_params["token"], TokenKind.OPEN)
        if claims is not None:
            with contextlib.suppress(RecorderUnavailable):  # logged by the recorder
                await self.recorder.record(claims.id, self._hit(request, "open", None))
        return Response(PIXEL, media_type="image/gif", headers=NO_STORE)

    async def click(self, request: Request) -> Response:
        claims = self.signer.verify(request.path_params["token"], TokenKind.CLICK)
        if claims is None:
            return PlainTextResponse(NOT_FOUND, status_code=404, headers=NO_STORE)
        try:
            result = await self.recorder.record(
                claims.id, self._hit(request, "click", claims.link_idx)
            )
        except RecorderUnavailable:
            return PlainTextResponse(
                "Temporarily unavailable: please try the link again in a moment.\n",
                status_code=503,
                headers={**NO_STORE, "Retry-After": "5"},
            )
        if not result.found:
            return PlainTextResponse(NOT_FOUND, status_code=404, headers=NO_STORE)
        if result.destination is None:  # the hidden honeypot link: only machines come here
            return PlainTextResponse("", headers=NO_STORE)
        # The destination comes from our own links table, never from the request.
        return RedirectResponse(result.destination, status_code=302, headers=NO_STORE)

    async def mark_browser(self, request: Request) -> Response:
        """Opens and clicks from a browser marked here count as its user's own, not the
        recipient's (the `sender` machine signal)."""
        token = request.path_params["token"]
        if self.signer.verify(token, TokenKind.USER) is None:
            return PlainTextResponse(NOT_FOUND, status_code=404, headers=NO_STORE)
        response = HTMLResponse(
            "<!doctype html><title>mailbeacon</title><p>This browser is now recognised as yours: "
            "your own opens and clicks of the emails you send will not be counted.</p>",
            headers=NO_STORE,
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

    def _hit(self, request: Request, kind: HitKind, link_idx: int | None) -> Hit:
        headers = request.headers
        viewer = None
        if "cookie" in headers and (token := request.cookies.get(VIEWER_COOKIE)):
            claims = self.signer.verify(token, TokenKind.USER)
            viewer = claims.id if claims else None
        return Hit(
            kind=kind,
            at=self.clock(),
            link_idx=link_idx,
            method=request.method,
            user_agent=headers.get("user-agent", ""),
            ip=request.client.host if request.client else "",
            viewer_user_id=viewer,
        )

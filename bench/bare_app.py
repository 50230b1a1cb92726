"""The yardstick: a bare ASGI app answering the same GIF, with no framework and no database."""

from __future__ import annotations

from typing import Any

from tracking.routes import PIXEL

HEADERS = [
    (b"content-type", b"image/gif"),
    (b"content-length", str(len(PIXEL)).encode()),
    (b"cache-control", b"no-store, private"),
]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": PIXEL})

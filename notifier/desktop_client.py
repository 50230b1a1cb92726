"""`mailbeacon desktop`: the user's desktop alerts as native notifications (desktop-notifier),
read from the same stream as the /alerts page. It reconnects when the stream drops, with the
last alert it showed, so it misses nothing while the server restarts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import httpx

Show = Callable[[str, str], Awaitable[None]]  # title, details
RECONNECT_SECONDS = 3.0


class DesktopLinkError(Exception):
    """The link is not one of mailbeacon's alert links, or the server refused it."""


def stream_url(link: str) -> str:
    """The stream behind a page link (…/alerts?token=…), or the stream link itself."""
    parts = urlsplit(link)
    if parts.scheme not in ("http", "https") or "token=" not in parts.query:
        raise DesktopLinkError(
            f"{link!r} is not an alerts link: use the one `/beacon alerts add … via desktop` "
            "gave you (…/alerts?token=…)"
        )
    path = parts.path.rstrip("/")
    if not path.endswith("/alerts/stream"):
        if not path.endswith("/alerts"):
            raise DesktopLinkError(f"{link!r} is not an alerts link (…/alerts?token=…)")
        path += "/stream"
    return urlunsplit(parts._replace(path=path))


async def follow(link: str, show: Show, *, stop_after: int | None = None) -> int:
    """Show each alert the stream sends, until `stop_after` alerts (None: for ever)."""
    url = stream_url(link)
    last_id: str | None = None
    shown = 0
    timeout = httpx.Timeout(10.0, read=None)  # the stream is quiet between alerts
    async with httpx.AsyncClient(timeout=timeout) as client:
        while stop_after is None or shown < stop_after:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                async with client.stream("GET", url, headers=headers) as response:
                    if response.status_code != 200:
                        raise DesktopLinkError(
                            f"the server refused the link ({response.status_code}): ask for a "
                            "new one with `/beacon alerts add … via desktop`"
                        )
                    event_id, data = None, None
                    async for line in response.aiter_lines():
                        if line.startswith("id:"):
                            event_id = line[3:].strip()
                        elif line.startswith("data:"):
                            data = json.loads(line[5:])
                        elif not line and data is not None:  # the end of one event
                            await show(data["title"], data["details"])
                            last_id, shown, data = event_id, shown + 1, None
                            if stop_after is not None and shown >= stop_after:
                                return shown
            except httpx.TransportError:
                pass  # the server is restarting, or the network is away: try again soon
            await asyncio.sleep(RECONNECT_SECONDS)
    return shown


def native_show(app_name: str = "mailbeacon") -> Show:
    """Desktop notifications through the platform's own service (D-Bus, Notification Center,
    or Windows' toasts)."""
    from desktop_notifier import DesktopNotifier

    notifier = DesktopNotifier(app_name=app_name)

    async def show(title: str, details: str) -> None:
        await notifier.send(title=title, message=details)

    return show

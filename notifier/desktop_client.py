"""`mailbeacon desktop`: the user's desktop alerts as native notifications (desktop-notifier),
read from the same stream as the /alerts page. It reconnects when the stream drops, with the
last alert it showed, so it misses nothing while the server restarts. It tells the server each
alert it has shown (`ack=client`), so one it could not show (no notification service) stays
for the page and the next run."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import httpx

Show = Callable[[str, str], Awaitable[None]]  # title, details
RECONNECT_SECONDS = 3.0


class DesktopLinkError(Exception):
    """The link is not one of mailbeacon's alert links, or the server refused it."""


class NoNotificationService(Exception):
    """This machine shows no desktop notifications (no D-Bus session, no notification daemon)."""

    def __init__(self, reason: object) -> None:
        where = "a D-Bus session with a notification daemon" if sys.platform == "linux" else "one"
        first = (
            str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
        )
        super().__init__(
            f"no desktop notification service ({first}): run `mailbeacon desktop` inside your "
            f"desktop session ({where}), or open the link in a browser instead"
        )


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


def shown_url(stream: str) -> str:
    """Where the client says it has shown an alert (POST …/alerts/shown?token=…&id=…)."""
    parts = urlsplit(stream)
    return urlunsplit(parts._replace(path=parts.path.removesuffix("/stream") + "/shown"))


async def follow(link: str, show: Show, *, stop_after: int | None = None) -> int:
    """Show each alert the stream sends, until `stop_after` alerts (None: for ever); an alert is
    acknowledged once `show` has returned, so one it raised for stays pending."""
    # The server marks an alert shown when we say so (POST …/shown), not when it sends it.
    url = httpx.URL(stream_url(link)).copy_merge_params({"ack": "client"})
    shown_at = httpx.URL(shown_url(stream_url(link)))
    last_id: str | None = None
    shown = 0
    timeout = httpx.Timeout(10.0, read=None)  # the stream is quiet between alerts
    async with httpx.AsyncClient(timeout=timeout) as client:
        while stop_after is None or shown < stop_after:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                async with client.stream("GET", url, headers=headers) as response:
                    _check(response)
                    event_id, data = None, None
                    async for line in response.aiter_lines():
                        if line.startswith("id:"):
                            event_id = line[3:].strip()
                        elif line.startswith("data:"):
                            data = json.loads(line[5:])
                        elif not line and data is not None:  # the end of one event
                            await show(data["title"], data["details"])
                            last_id, shown, data = event_id, shown + 1, None
                            ack = shown_at.copy_merge_params({"id": event_id or ""})
                            _check(await client.post(ack))
                            if stop_after is not None and shown >= stop_after:
                                return shown
            except httpx.TransportError:
                pass  # the server is restarting, or the network is away: try again soon
            await asyncio.sleep(RECONNECT_SECONDS)
    return shown


def _check(response: httpx.Response) -> None:
    if not response.is_success:
        raise DesktopLinkError(
            f"the server refused the link ({response.status_code}): ask for a new one with "
            "`/beacon alerts add … via desktop`"
        )


async def native_show(app_name: str = "mailbeacon") -> Show:
    """Desktop notifications through the platform's own service (D-Bus, Notification Center,
    or Windows' toasts), once it has answered; raises NoNotificationService when it does not,
    then or for any alert later."""
    from desktop_notifier import DesktopNotifier

    # desktop-notifier logs a failed send as a warning with its traceback and carries on; we
    # tell the user in one line instead, and stop.
    logging.getLogger("desktop_notifier").addHandler(logging.NullHandler())
    logging.getLogger("desktop_notifier").propagate = False
    notifier = DesktopNotifier(app_name=app_name)
    try:
        await notifier.get_capabilities()  # connects to the service
    except Exception as exc:  # whatever the platform's binding raises
        raise NoNotificationService(exc) from exc

    async def show(title: str, details: str) -> None:
        dispatched = asyncio.Event()
        await notifier.send(title=title, message=details, on_dispatched=dispatched.set)
        if not dispatched.is_set():
            raise NoNotificationService("the notification service refused an alert")

    return show


async def follow_natively(link: str, *, stop_after: int | None = None) -> int:
    """`follow` with native notifications; the link is checked before the service."""
    stream_url(link)
    return await follow(link, await native_show(), stop_after=stop_after)

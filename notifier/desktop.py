"""Alerts on the desktop (DESIGN §6): `/alerts` is a page that shows them as the browser's
desktop notifications, fed by `/alerts/stream`, a Server-Sent Events stream per user.

The stream is the desktop channel's deliverer: every open page reads the user's desktop
deliveries after the last one it showed, so each device shows every alert, and a page that
reconnects (Last-Event-ID) gets what it missed. A delivery is marked delivered once a page has
been sent it, or, for a client that asks to acknowledge itself (`ack=client`: `mailbeacon
desktop`), once it says it has shown it (POST `/alerts/shown`), so an alert it could not show is
not lost. `/alerts/recent` is the page's history: the user's last alerts, shown or not. Every URL
carries the user's feed token, never their email address; the token holds the user's feed
version, so a new link (`alerts link new`) revokes the old one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, TypedDict

from sqlalchemy import Connection, Engine, func, select, true, update
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from notifier.digests import zone
from notifier.dispatcher import ALERT_ROWS, NEWS, alert_of
from store.clock import Clock, utcnow
from store.schema import deliveries, events, subscriptions, users
from tracking.tokens import Claims, TokenKind, TokenSigner

POLL_SECONDS = 1.0
KEEP_ALIVE_SECONDS = 15.0
NOT_VALID = "This alerts link is not valid: ask mailbeacon for a new one (`/beacon alerts link`).\n"
FEED_VERSIONS = 2**16  # what the token's 16-bit field holds
RECENT = 50  # alerts the page lists


class PageAlert(TypedDict):
    id: int  # the delivery's
    title: str
    details: str
    at: str  # when it happened, in the user's time zone
    campaign: int | None


def page_alert(row: Any) -> PageAlert:
    """What the page and the desktop client get of a row of ALERT_ROWS."""
    alert = alert_of(row)
    local = row.at.astimezone(zone(row.user_timezone))
    return PageAlert(
        id=row.id,
        title=alert.title,
        details=alert.details,
        at=f"{local:%Y-%m-%d %H:%M} {local.tzname()}",
        campaign=row.campaign_id,
    )


def feed_link(
    connection: Connection, signer: TokenSigner, base_url: str, user_id: int, *, new: bool = False
) -> str:
    """The user's alerts page; with `new`, a new link, and every older one stops working."""
    if new:
        connection.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(feed_version=(users.c.feed_version + 1) % FEED_VERSIONS)
        )
    version = connection.scalar(select(users.c.feed_version).where(users.c.id == user_id))
    return f"{base_url}/alerts?token={signer.feed_token(user_id, version or 0)}"


def feed_claims(engine: Engine, signer: TokenSigner, token: str) -> Claims | None:
    """The claims of a feed token (the user's id, their feed version) while it is the user's
    newest link; None for any other."""
    claims = signer.verify(token, TokenKind.FEED)
    if claims is None:
        return None
    with engine.connect() as connection:
        version = connection.scalar(select(users.c.feed_version).where(users.c.id == claims.id))
    return claims if version == claims.link_idx else None


def desktop_alerts(
    engine: Engine,
    user_id: int,
    after: int,
    *,
    feed_version: int | None = None,
    mark: bool = True,
    clock: Clock = utcnow,
) -> list[PageAlert]:
    """The user's desktop alerts after delivery `after`, oldest first (at most a day old); with
    `mark`, those not delivered yet are marked delivered. With `feed_version`: none once the
    user has made a new link (a page still open on a revoked link gets nothing more)."""
    now = clock()
    # Every open page asks every second: a short read, and a write only when there is
    # something to mark.
    with engine.connect() as connection:
        rows = connection.execute(
            ALERT_ROWS.where(
                deliveries.c.channel == "desktop",
                subscriptions.c.user_id == user_id,
                deliveries.c.id > after,
                deliveries.c.created_at >= now - NEWS,
                true() if feed_version is None else users.c.feed_version == feed_version,
            ).limit(100)
        ).all()
    if mark:
        mark_shown(engine, user_id, [row.id for row in rows if row.status == "pending"], now)
    return [page_alert(row) for row in rows]


def mark_shown(engine: Engine, user_id: int, delivery_ids: list[int], now: datetime) -> None:
    """Marks those of the user's desktop deliveries delivered."""
    if not delivery_ids:
        return
    mine = select(subscriptions.c.id).where(subscriptions.c.user_id == user_id)
    with engine.begin() as connection:
        connection.execute(
            update(deliveries)
            .where(
                deliveries.c.id.in_(delivery_ids),
                deliveries.c.channel == "desktop",
                deliveries.c.status == "pending",
                deliveries.c.subscription_id.in_(mine),
            )
            .values(status="delivered", delivered_at=now, attempts=deliveries.c.attempts + 1)
        )


def recent_alerts(engine: Engine, user_id: int, limit: int = RECENT) -> list[PageAlert]:
    """The user's last `limit` desktop alerts, shown or not, newest first."""
    with engine.connect() as connection:
        rows = connection.execute(
            ALERT_ROWS.where(deliveries.c.channel == "desktop", subscriptions.c.user_id == user_id)
            .order_by(None)  # ALERT_ROWS' oldest first
            .order_by(events.c.at.desc(), deliveries.c.id.desc())
            .limit(limit)
        ).all()
    return [page_alert(row) for row in rows]


def last_shown(engine: Engine, user_id: int) -> int:
    """The newest of the user's desktop alerts a page has shown (0: none)."""
    with engine.connect() as connection:
        newest = connection.scalar(
            select(func.max(deliveries.c.id))
            .select_from(deliveries.join(subscriptions))
            .where(
                deliveries.c.channel == "desktop",
                deliveries.c.status == "delivered",
                subscriptions.c.user_id == user_id,
            )
        )
    return int(newest or 0)


def event_id(last_event_id: str) -> int | None:
    """The delivery id a reconnecting page last got, or None for anything we could not have sent
    (a hand-made or mangled header): that page gets a fresh stream."""
    # Ids we send are database ids: ASCII digits, well under 2**63.
    if last_event_id.isascii() and last_event_id.isdigit() and len(last_event_id) <= 18:
        return int(last_event_id)
    return None


def desktop_routes(engine: Engine, signer: TokenSigner) -> list[Route]:
    async def page(request: Request) -> Response:
        return HTMLResponse(
            PAGE,
            headers={
                "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": (
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                    "connect-src 'self'"
                ),
            },
        )

    async def claims_of(request: Request) -> Claims | None:
        token = request.query_params.get("token", "")
        return await asyncio.to_thread(feed_claims, engine, signer, token)

    async def stream(request: Request) -> Response:
        claims = await claims_of(request)
        if claims is None:
            return PlainTextResponse(NOT_VALID, status_code=404)
        after = event_id(request.headers.get("last-event-id", ""))
        if after is None:
            after = await asyncio.to_thread(last_shown, engine, claims.id)
        mark = request.query_params.get("ack") != "client"
        return StreamingResponse(
            _events(engine, claims, after, mark),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def shown(request: Request) -> Response:
        claims = await claims_of(request)
        if claims is None:
            return PlainTextResponse(NOT_VALID, status_code=404)
        delivery_id = event_id(request.query_params.get("id", ""))
        if delivery_id is None:
            return PlainTextResponse("id: the alert's id, a whole number\n", status_code=400)
        await asyncio.to_thread(mark_shown, engine, claims.id, [delivery_id], utcnow())
        return Response(status_code=204)

    async def recent(request: Request) -> Response:
        claims = await claims_of(request)
        if claims is None:
            return PlainTextResponse(NOT_VALID, status_code=404)
        alerts = await asyncio.to_thread(recent_alerts, engine, claims.id)
        return JSONResponse(alerts, headers={"Cache-Control": "no-store"})

    return [
        Route("/alerts", page),
        Route("/alerts/stream", stream),
        Route("/alerts/shown", shown, methods=["POST"]),
        Route("/alerts/recent", recent),
    ]


async def _events(engine: Engine, claims: Claims, after: int, mark: bool) -> AsyncIterator[str]:
    yield "retry: 3000\n\n"
    quiet = 0.0
    while True:
        alerts = await asyncio.to_thread(
            desktop_alerts, engine, claims.id, after, feed_version=claims.link_idx, mark=mark
        )
        for alert in alerts:
            after = alert["id"]
            yield f"id: {after}\nevent: alert\ndata: {json.dumps(alert)}\n\n"
        quiet = 0.0 if alerts else quiet + POLL_SECONDS
        if quiet >= KEEP_ALIVE_SECONDS:  # through proxies that close idle connections
            quiet = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(POLL_SECONDS)


PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>mailbeacon alerts</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 40em; }
  li { margin: .6em 0; } small { color: #555; }
</style>
<h1>mailbeacon alerts</h1>
<p id="state">Connecting…</p>
<p><button id="allow" hidden>Show them as desktop notifications</button></p>
<ul id="alerts"></ul>
<script>
  // Text goes in through textContent only: titles carry strangers' names.
  const token = encodeURIComponent(new URLSearchParams(location.search).get("token") || "");
  const state = document.getElementById("state");
  const allow = document.getElementById("allow");
  const list = document.getElementById("alerts");
  const listed = new Set();
  function item(alert) {
    const item = document.createElement("li");
    const title = document.createElement("strong");
    title.textContent = alert.title;
    const at = document.createElement("small");
    at.textContent = alert.at;
    const details = document.createElement("small");
    details.textContent = alert.details;
    item.append(title, document.createElement("br"), at, document.createElement("br"), details);
    listed.add(alert.id);
    return item;
  }
  if ("Notification" in window && Notification.permission === "default") {
    allow.hidden = false;
    allow.onclick = () => Notification.requestPermission().then(() => { allow.hidden = true; });
  }
  fetch("/alerts/recent?token=" + token).then((response) => response.ok ? response.json() : [])
    .then((alerts) => {
      for (const alert of alerts) { if (!listed.has(alert.id)) list.append(item(alert)); }
    });
  const source = new EventSource("/alerts/stream?token=" + token);
  source.onopen = () => { state.textContent = "Keep this tab open: new alerts appear here."; };
  source.onerror = () => { state.textContent = "Reconnecting…"; };
  source.addEventListener("alert", (event) => {
    const alert = JSON.parse(event.data);
    if (!listed.has(alert.id)) list.prepend(item(alert));
    if ("Notification" in window && Notification.permission === "granted") {
      new Notification(alert.title, { body: alert.details, tag: event.lastEventId });
    }
  });
</script>
</html>
"""

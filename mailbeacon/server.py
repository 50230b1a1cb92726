"""The one Starlette app: tracking endpoints and health, with the hit journal and its loader in
its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import Engine, select, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from mailbeacon.loading import LoaderProcess
from mailbeacon.settings import Settings
from mailbeacon.slackbot import slack_bot, slack_routes, socket_mode
from mailbeacon.worker import Jobs, start_jobs
from notifier.desktop import desktop_routes
from outreach.accounts import save_mailbox
from outreach.oauth import (
    CONNECT_PATH,
    COOKIE,
    NAMES,
    SERVICES,
    SIGN_IN_TTL,
    OAuthError,
    browser_cookie,
    finish_sign_in,
    open_sign_in,
    read_callback,
    redirect_uri,
    sign_in_url,
    use_sign_in,
)
from store.clock import Clock, utcnow
from store.crypto import CredentialCipher
from store.engine import make_engine
from store.schema import users
from tracking.destinations import Destinations
from tracking.journal import Journal
from tracking.loader import backlog
from tracking.routes import ASGIApp, TrackingEndpoints
from tracking.tokens import TokenSigner

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    engine: Engine | None = None,
    clock: Clock = utcnow,
    *,
    run_jobs: bool = True,
    load_hits: bool = True,
) -> ASGIApp:
    """`load_hits` off: no loader process is started (tests load the journal themselves)."""
    engine = engine or make_engine(settings.database)
    folder = Path(settings.tracking.journal_dir)
    journal = Journal(folder) if settings.tracking.enabled else None
    bot = slack_bot(settings, engine)
    # In every serving process, with jobs or not (`--role web` too): see SocketMode.
    socket = socket_mode(settings, bot)
    jobs: Jobs | None = None

    def loaded(newest: datetime) -> None:
        if jobs is not None:
            jobs.alerts_due(newest)  # its alerts, once it has settled

    loader = LoaderProcess(settings, loaded) if load_hits else None

    async def healthz(request: Request) -> JSONResponse:
        """Green while hits can be journaled, also with the database away: they wait in the
        journal (its backlog is shown), and are loaded once it is back."""
        waiting = await asyncio.to_thread(backlog, folder)
        answer = {
            "status": "ok",
            "database": await _database_state(engine),
            "journal": {
                "hits_journaled": journal.hits if journal else 0,
                "backlog_files": waiting.files,
                "backlog_hits": waiting.hits,
                "oldest": waiting.oldest.isoformat() if waiting.oldest else None,
                "loader_error": waiting.error,
            },
        }
        if journal is not None and journal.failing:
            answer |= {"status": "error", "error": f"hits cannot be journaled: {journal.failing}"}
            return JSONResponse(answer, status_code=503)
        return JSONResponse(answer)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal jobs
        # Stopped in the reverse order, each whatever the others do: the journal is synced
        # even when the database is away and the jobs cannot hand their lease on.
        async with contextlib.AsyncExitStack() as started:
            if loader is not None:
                loader.start()
                started.push_async_callback(loader.stop)
            if journal is not None:
                journal.start()
                started.push_async_callback(journal.stop)
            if run_jobs:
                jobs = start_jobs(settings, engine)
                started.push_async_callback(jobs.stop)
            if socket is not None:
                socket.start()
                # First: no new requests while the rest winds down.
                started.push_async_callback(socket.stop)
            yield

    def sign_in_link(request: Request) -> Response:
        # A plain def: Starlette runs it in a thread, as Microsoft's sign-in URL is network I/O.
        return _open_sign_in(settings, engine, clock, request)

    def oauth_callback(request: Request) -> HTMLResponse:
        # A plain def: Starlette runs it in a thread, as the code exchange is network I/O.
        return _connect_mailbox(settings, engine, clock, request)

    signer = TokenSigner(settings.tracking.signing_keys)
    secure = settings.tracking.base_url.startswith("https://")
    app = Starlette(lifespan=lifespan)
    endpoints = TrackingEndpoints(
        app,
        journal,
        Destinations(engine),
        signer,
        clock,
        secure_cookies=secure,
        anonymize_ip=settings.tracking.anonymize_ip,
    )
    app.router.routes.extend(
        [
            *endpoints.routes(),
            *desktop_routes(engine, signer),
            Route("/healthz", healthz),
            Route(CONNECT_PATH, sign_in_link),
            Route("/oauth/{service}/callback", oauth_callback),
        ]
    )
    if bot is not None:
        app.router.routes.extend(slack_routes(bot))
    return endpoints


async def _database_state(engine: Engine) -> str:
    def ping() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    try:
        # Another process may hold the database's lock for long: a load balancer wants its
        # answer within 2 s.
        await asyncio.wait_for(asyncio.to_thread(ping), timeout=1.5)
    except TimeoutError:
        return "busy"
    except Exception as exc:
        log.warning("health check: the database does not answer: %s", exc)
        return "unreachable"
    return "ok"


def _open_sign_in(settings: Settings, engine: Engine, clock: Clock, request: Request) -> Response:
    """A sign-in link from `/beacon connect`: the first browser to open it gets a cookie that
    only it can finish the sign-in with, and goes on to Google's or Microsoft's sign-in."""
    cookie = browser_cookie(request.cookies.get(COOKIE))
    base_url = settings.tracking.base_url
    try:
        with engine.begin() as connection:
            sign_in = open_sign_in(connection, request.path_params["sign_in"], cookie, clock())
        url = sign_in_url(settings.oauth, sign_in, redirect_uri(base_url, sign_in.provider))
    except OAuthError as exc:
        return _page(f"The mailbox was not connected: {exc}", exc.status)
    response = RedirectResponse(url, 302, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(SIGN_IN_TTL.total_seconds()),
        path=urlsplit(base_url).path.rstrip("/") or "/",  # the link and the callbacks
        secure=base_url.startswith("https://"),
        httponly=True,
        samesite="lax",  # sent on the provider's redirect back, a top-level GET
    )
    return response


def _connect_mailbox(
    settings: Settings, engine: Engine, clock: Clock, request: Request
) -> HTMLResponse:
    """Where Google or Microsoft send the browser back from a sign-in link."""
    provider = {service: name for name, service in SERVICES.items()}.get(
        request.path_params["service"]
    )
    if provider is None:
        return _page("There is no such sign-in.", 404)
    query = request.query_params
    try:
        # Used from here on, whatever comes next: a code redeems once anyway.
        with engine.begin() as connection:
            sign_in = use_sign_in(
                connection,
                query.get("state", ""),
                provider,
                request.cookies.get(COOKIE, ""),
                clock(),
            )
        code = read_callback(provider, query)
        back = redirect_uri(settings.tracking.base_url, provider)
        connected = finish_sign_in(settings.oauth, sign_in, code, back)
        with engine.begin() as connection:
            save_mailbox(
                connection,
                provider=connected.provider,
                address=connected.address,
                owner_user_id=sign_in.user_id,
                credentials=connected.credentials,
                cipher=CredentialCipher(settings.secrets.encryption_keys),
            )
            owner = connection.scalar(select(users.c.email).where(users.c.id == sign_in.user_id))
    except OAuthError as exc:
        return _page(f"The mailbox was not connected: {exc}", exc.status)
    return _page(
        f"Connected {connected.address} ({NAMES[provider]}): emails that {owner} sends with "
        "mailbeacon now go out from it. You can close this page."
    )


def _page(text: str, status: int = 200) -> HTMLResponse:
    # The code is in this page's address: never cache it, never send it on as a referrer.
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    body = f"<!doctype html><title>mailbeacon</title><p>{html.escape(text)}</p>"
    return HTMLResponse(body, status_code=status, headers=headers)

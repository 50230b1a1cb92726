"""The one Starlette app: tracking endpoints and health, with the recorder in its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from sqlalchemy import Engine, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mailbeacon.settings import Settings
from store.clock import Clock, utcnow
from store.engine import make_engine
from tracking.classify import Rules, parse_networks
from tracking.recorder import Recorder
from tracking.routes import ASGIApp, TrackingEndpoints
from tracking.tokens import TokenSigner

log = logging.getLogger(__name__)


def tracking_rules(settings: Settings) -> Rules:
    return Rules(
        machine_after_send=timedelta(seconds=settings.tracking.machine_after_send_seconds),
        internal_networks=parse_networks(settings.tracking.internal_networks),
    )


def create_app(settings: Settings, engine: Engine | None = None, clock: Clock = utcnow) -> ASGIApp:
    engine = engine or make_engine(settings.database)
    recorder = Recorder(engine, settings.tracking, tracking_rules(settings))

    async def healthz(request: Request) -> JSONResponse:
        def ping() -> None:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))

        try:
            await asyncio.to_thread(ping)
        except Exception:
            log.exception("health check: the database does not answer")
            return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
        return JSONResponse(
            {"status": "ok", "hits_committed": recorder.rows, "commits": recorder.batches}
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        recorder.start()
        try:
            yield
        finally:
            await recorder.stop()

    signer = TokenSigner(settings.tracking.signing_keys)
    secure = settings.tracking.base_url.startswith("https://")
    app = Starlette(lifespan=lifespan)
    endpoints = TrackingEndpoints(app, recorder, signer, clock, secure_cookies=secure)
    app.router.routes.extend([*endpoints.routes(), Route("/healthz", healthz)])
    return endpoints

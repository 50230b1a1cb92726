"""The tracking endpoints against a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from mailbeacon.serve import free_port, running_in_thread, uvicorn_config
from store.engine import make_engine
from store.schema import endusers, users
from tests.conftest import settings_for
from tests.tracking.conftest import PERSON, ServerFactory, TrackingServer
from tracking.routes import PIXEL
from tracking.tokens import TokenSigner


def test_the_pixel_is_a_43_byte_gif_that_is_never_cached(server: TrackingServer) -> None:
    email = server.send()
    response = server.get(email.open_url)
    assert response.status_code == 200
    assert response.content == PIXEL and len(PIXEL) == 43 and PIXEL.startswith(b"GIF89a")
    assert response.headers["content-type"] == "image/gif"
    assert "no-store" in response.headers["cache-control"]
    [event] = server.events(email.id)
    assert (event.kind, event.machine, event.user_agent) == ("open", False, PERSON)
    assert server.engagement(email.id).open_rate == 100


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: t[:-3], id="truncated"),
        pytest.param(lambda t: t[:-4] + "AAAA", id="forged-tag"),
        pytest.param(lambda t: "garbage", id="garbage"),
        pytest.param(lambda t: "%00%ff" * 6, id="binary"),
        pytest.param(lambda t: TokenSigner(["retired-key-0000000"]).open_token(1), id="old-key"),
    ],
)
def test_bad_tokens_still_get_the_gif_but_record_nothing(
    server: TrackingServer, mangle: object
) -> None:
    email = server.send()
    token = email.open_url.rsplit("/", 1)[1].removesuffix(".gif")
    assert callable(mangle)
    response = server.get(f"{server.base}/t/o/{mangle(token)}.gif")
    assert (response.status_code, response.content) == (200, PIXEL)
    assert server.events(email.id) == []
    assert server.engagement(email.id).open_rate == 0


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: t[:-3], id="truncated"),
        pytest.param(lambda t: t[:-4] + "AAAA", id="forged-tag"),
        pytest.param(lambda t: "garbage", id="garbage"),
        pytest.param(
            lambda t: TokenSigner(["retired-key-0000000"]).click_token(1, 1), id="old-key"
        ),
    ],
)
def test_bad_click_tokens_get_a_plain_404_and_no_redirect(
    server: TrackingServer, mangle: object
) -> None:
    email = server.send()
    token = email.click_urls[1].rsplit("/", 1)[1]
    assert callable(mangle)
    response = server.get(f"{server.base}/t/c/{mangle(token)}")
    assert response.status_code == 404
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/plain")
    assert "not valid" in response.text
    assert server.events(email.id) == []


def test_a_click_redirects_to_the_stored_destination_and_implies_an_open(
    server: TrackingServer,
) -> None:
    email = server.send()
    response = server.get(email.click_urls[2])
    assert response.status_code == 302
    assert response.headers["location"] == "https://example.com/two?x=1#frag"
    engagement = server.engagement(email.id)
    assert (engagement.click_rate, engagement.open_rate, engagement.clicks) == (100, 100, 1)
    [event] = server.events(email.id)
    assert (event.kind, event.link_idx, event.machine) == ("click", 2, False)


def test_the_destination_never_comes_from_the_request(server: TrackingServer) -> None:
    email = server.send()
    response = server.get(email.click_urls[1] + "?url=https://evil.example/&next=//evil.example")
    assert response.headers["location"] == "https://example.com/one"
    # A genuine token for a link index the email does not have: nothing to redirect to.
    missing = server.signer.click_token(email.id, 9)
    assert server.get(f"{server.base}/t/c/{missing}").status_code == 404


def test_head_requests_are_scanners_and_get_requests_are_people(server: TrackingServer) -> None:
    email = server.send()
    head = server.client.head(email.click_urls[1], headers={"User-Agent": PERSON})
    assert head.status_code == 302
    server.get(email.click_urls[1], ip="198.51.100.200")
    kinds = [
        (e.machine, e.machine_reason, (e.details or {}).get("method"))
        for e in server.events(email.id)
    ]
    assert kinds == [(True, "head_request", "HEAD"), (False, None, None)]


def test_the_honeypot_exposes_a_scanner_and_everything_it_touched(server: TrackingServer) -> None:
    email = server.send()
    server.get(email.click_urls[1], ip="203.0.113.5")  # looks human on its own...
    assert server.engagement(email.id).click_rate == 100
    response = server.get(email.click_urls[0], ip="203.0.113.5")  # ...until the hidden link
    assert response.status_code == 200 and "location" not in response.headers
    reasons = [e.machine_reason for e in server.events(email.id)]
    assert reasons == ["honeypot", "honeypot"]
    engagement = server.engagement(email.id)
    assert (engagement.click_rate, engagement.click_rate_raw, engagement.open_rate) == (0, 100, 0)


def test_all_links_clicked_within_seconds_is_a_link_scanner(server: TrackingServer) -> None:
    email = server.send()
    server.get(email.click_urls[1])
    server.get(email.click_urls[2])
    assert [e.machine_reason for e in server.events(email.id)] == ["link_burst", "link_burst"]
    assert server.engagement(email.id).click_rate == 0


@pytest.mark.parametrize(
    ("agent", "reason", "open_rate"),
    [
        ("Mozilla/5.0", "apple_mpp", 0),
        (
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "bot_user_agent",
            0,
        ),
        (
            "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 "
            "(via ggpht.com GoogleImageProxy)",
            None,
            100,
        ),
        (PERSON, None, 100),
    ],
)
def test_opens_are_classified_by_who_fetched_the_pixel(
    server: TrackingServer, agent: str, reason: str | None, open_rate: int
) -> None:
    email = server.send()
    server.get(email.open_url, agent=agent)
    [event] = server.events(email.id)
    assert event.machine_reason == reason
    engagement = server.engagement(email.id)
    assert (engagement.open_rate, engagement.open_rate_raw) == (open_rate, 100)


def test_a_hit_right_after_sending_is_a_machine(server: TrackingServer) -> None:
    email = server.send(sent_ago=timedelta(seconds=0))
    server.get(email.open_url)
    assert [e.machine_reason for e in server.events(email.id)] == ["soon_after_send"]


def test_the_senders_own_browser_is_recognised(server: TrackingServer) -> None:
    with server.engine.begin() as connection:
        sender = connection.execute(
            users.insert().values(email="me@us.example").returning(users.c.id)
        ).scalar_one()
    email = server.send(sender_user_id=sender)
    marked = server.get(f"{server.base}/t/me/{server.signer.user_token(sender)}")
    assert marked.status_code == 200 and "mb_user" in marked.headers["set-cookie"]
    server.client.cookies = marked.cookies
    server.get(email.open_url)
    assert [e.machine_reason for e in server.events(email.id)] == ["sender"]
    assert server.get(f"{server.base}/t/me/garbage").status_code == 404


def test_outcomes_belong_to_the_first_to_recipient(server: TrackingServer) -> None:
    email = server.send(["sofia@customer.example", "jonas@customer.example"])
    server.get(email.open_url)
    with server.engine.connect() as connection:
        sofia = connection.scalar(
            endusers.select()
            .with_only_columns(endusers.c.id)
            .where(endusers.c.email == "sofia@customer.example")
        )
    assert server.engagement(email.id).enduser_id == sofia


def test_each_email_in_a_thread_is_its_own_record(server: TrackingServer) -> None:
    first = server.send(thread_id="thread-1")
    second = server.send(thread_id="thread-1")
    server.get(second.click_urls[1])
    assert server.engagement(first.id).open_rate == 0
    assert server.engagement(first.id).click_rate == 0
    assert (server.engagement(second.id).open_rate, server.engagement(second.id).click_rate) == (
        100,
        100,
    )


def test_two_hundred_concurrent_hits_on_one_email_are_counted_exactly(
    server: TrackingServer,
) -> None:
    email = server.send()

    async def hammer() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            responses = await asyncio.gather(
                *(client.get(email.open_url, headers={"User-Agent": PERSON}) for _ in range(200))
            )
        return [r.status_code for r in responses]

    assert asyncio.run(hammer()) == [200] * 200
    assert len(server.events(email.id)) == 200
    assert server.engagement(email.id).opens == 200


def test_tracking_switched_off_records_nothing_but_links_still_work(
    tracking_server_factory: ServerFactory,
) -> None:
    on = tracking_server_factory()
    email = on.send()
    off = tracking_server_factory(TRACKING__ENABLED="false")
    assert off.get(email.open_url.replace(on.base, off.base)).content == PIXEL
    click = off.get(email.click_urls[1].replace(on.base, off.base))
    assert click.headers["location"] == "https://example.com/one"
    assert off.events(email.id) == []
    # ...and new emails carry no tracking at all.
    fresh = off.send()
    assert fresh.click_urls == {}
    engagement = off.engagement(fresh.id)
    assert (engagement.open_rate, engagement.click_rate, engagement.reply_rate) == (None, None, 0)


def test_an_enduser_who_opted_out_is_not_tracked(server: TrackingServer) -> None:
    email = server.send(["optout@customer.example"])
    with server.engine.begin() as connection:
        connection.execute(
            update(endusers)
            .where(endusers.c.email == "optout@customer.example")
            .values(tracking_opt_out=True)
        )
    assert server.get(email.open_url).status_code == 200
    assert server.get(email.click_urls[1]).status_code == 302
    assert server.events(email.id) == []
    later = server.send(["optout@customer.example"])
    assert later.click_urls == {}
    assert server.engagement(later.id).open_rate is None


def test_ip_addresses_can_be_stored_anonymized(tracking_server_factory: ServerFactory) -> None:
    server = tracking_server_factory(TRACKING__ANONYMIZE_IP="true")
    email = server.send()
    server.get(email.open_url, ip="198.51.100.77")
    server.get(email.click_urls[1], ip="2001:db8:1:2:3:4:5:6")
    assert [e.ip for e in server.events(email.id)] == ["198.51.100.0", "2001:db8:1::"]


def test_health(server: TrackingServer) -> None:
    response = server.client.get(f"{server.base}/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_a_database_outage_still_gives_the_gif_and_a_clear_503(tmp_path: Path) -> None:
    port = free_port()
    settings, _ = settings_for(tmp_path, DATABASE__URL="postgresql://nobody@127.0.0.1:9/none")
    signer = TokenSigner(settings.tracking.signing_keys)
    base = f"http://127.0.0.1:{port}"
    config = uvicorn_config(settings, make_engine(settings.database), "127.0.0.1", port)
    with running_in_thread(config), httpx.Client(base_url=base) as client:
        pixel = client.get(f"/t/o/{signer.open_token(1)}.gif")
        assert (pixel.status_code, pixel.content) == (200, PIXEL)
        click = client.get(f"/t/c/{signer.click_token(1, 1)}")
        assert (click.status_code, click.headers["retry-after"]) == (503, "5")
        assert "try the link again" in click.text
        health = client.get("/healthz")
        # Green all the same: both hits wait in the journal until the database is back.
        assert health.status_code == 200
        assert health.json()["database"] == "unreachable"
        assert health.json()["journal"]["backlog_hits"] == 2

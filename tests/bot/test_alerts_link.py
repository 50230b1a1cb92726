"""`/beacon alerts link [new]`: a user's alerts page, and a new link that revokes the old."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bot.context import CommandFailed
from mailbeacon.serve import free_port, running_in_thread, uvicorn_config
from tests.bot.conftest import BOSS, MEMBER, Team


def token(page: str) -> str:
    return parse_qs(urlsplit(page).query)["token"][0]


def stream_status(client: httpx.Client, base: str, page: str) -> int:
    url = f"{base}/alerts/stream?token={token(page)}"
    with client.stream("GET", url) as response:
        return response.status_code  # the stream itself never ends: leave it at that


def test_a_new_link_works_and_the_old_one_stops_working(team: Team) -> None:
    port = free_port()
    config = uvicorn_config(
        team.settings, team.engine, "127.0.0.1", port, log_level="warning", load_hits=False
    )
    base = f"http://127.0.0.1:{port}"
    old = team.run("alerts add on open via desktop").data["page"]
    assert team.run("alerts link").data == {"page": old, "new": False}
    with running_in_thread(config), httpx.Client(timeout=10) as client:
        assert stream_status(client, base, old) == 200
        reply = team.run("alerts link new")
        new = reply.data["page"]
        assert new != old and "older links no longer work" in reply.text
        gone = client.get(f"{base}/alerts/stream?token={token(old)}")
        assert gone.status_code == 404 and "not valid" in gone.text
        assert stream_status(client, base, new) == 200
        assert team.run("alerts link").data["page"] == new
        # Each user's link is their own: a new one for Boss leaves Mia's working.
        mia = team.run("alerts link", MEMBER).data["page"]
        team.run("alerts link new", BOSS)
        assert stream_status(client, base, mia) == 200
        assert client.get(f"{base}/alerts/stream?token={token(new)}").status_code == 404


def test_anything_but_new_is_refused(team: Team) -> None:
    with pytest.raises(CommandFailed, match="`alerts link new` for a new one"):
        team.run("alerts link old")

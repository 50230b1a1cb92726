"""`mailbeacon desktop`: alerts from the stream become native notifications, through the real
desktop-notifier and a fake notification daemon on a private D-Bus session bus."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys

import httpx
import pytest
from sqlalchemy import select

from mailbeacon.cli import main
from notifier.desktop_client import DesktopLinkError, NoNotificationService, follow, stream_url
from store.schema import deliveries
from tests.notifier.conftest import Desk

needs_dbus = pytest.mark.skipif(
    shutil.which("dbus-run-session") is None,
    reason="needs dbus-run-session (Debian's dbus-daemon package), which .ci/run installs",
)


def status(desk: Desk) -> str | None:
    with desk.engine.connect() as connection:
        return connection.scalar(select(deliveries.c.status))


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("https://b.example/alerts?token=abc", "https://b.example/alerts/stream?token=abc"),
        ("https://b.example/alerts/?token=abc", "https://b.example/alerts/stream?token=abc"),
        ("http://b.example/alerts/stream?token=abc", "http://b.example/alerts/stream?token=abc"),
        ("https://b.example/mb/alerts?token=abc", "https://b.example/mb/alerts/stream?token=abc"),
    ],
)
def test_the_stream_behind_a_page_link(link: str, expected: str) -> None:
    assert stream_url(link) == expected


@pytest.mark.parametrize(
    "link",
    ["ftp://b.example/alerts?token=abc", "https://b.example/alerts", "https://b.example/x?token=a"],
)
def test_what_is_not_an_alerts_link_is_refused(link: str) -> None:
    with pytest.raises(DesktopLinkError, match="is not an alerts link"):
        stream_url(link)


def test_a_bad_link_is_one_clear_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["desktop", "https://b.example/nothing"]) == 1
    assert "is not an alerts link" in capsys.readouterr().err


@needs_dbus
def test_alerts_show_up_as_desktop_notifications(desk: Desk) -> None:
    desk.open_and_dispatch()
    link = f"{desk.base}/alerts?token={desk.token}"
    client = [sys.executable, "-m", "mailbeacon.cli", "desktop", link, "--exit-after", "1"]
    daemon = [sys.executable, "-m", "tests.fakes.notifications", *client]
    run = subprocess.run(
        ["dbus-run-session", "--", *daemon], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    [shown] = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert (shown["app"], shown["summary"]) == ("mailbeacon", "ann@c.example opened “Renewal”")
    assert shown["body"].startswith("ann@c.example · ")
    assert "mailbeacon: 1 alert shown" in run.stdout
    assert status(desk) == "delivered"


@pytest.mark.skipif(sys.platform != "linux", reason="names the D-Bus session bus")
def test_without_a_session_bus_it_says_so_and_leaves_the_alert(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    desk.open_and_dispatch()
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")
    link = f"{desk.base}/alerts?token={desk.token}"
    assert main(["desktop", link, "--exit-after", "1"]) == 1
    out, err = capsys.readouterr()
    [line] = err.splitlines()
    assert line.startswith("mailbeacon: no desktop notification service")
    assert "desktop session" in line and "shown" not in out
    assert status(desk) == "pending"
    with httpx.Client(timeout=10) as client:  # still there for the page
        [(_, alert)] = desk.read(client, 1)
    assert alert["title"] == "ann@c.example opened “Renewal”"


@needs_dbus
def test_a_session_bus_without_a_notification_daemon_is_one_line_and_exit_1(desk: Desk) -> None:
    desk.open_and_dispatch()
    link = f"{desk.base}/alerts?token={desk.token}"
    client = [sys.executable, "-m", "mailbeacon.cli", "desktop", link, "--exit-after", "1"]
    run = subprocess.run(
        ["dbus-run-session", "--", *client], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr
    # dbus-daemon may add lines of its own
    [line] = [line for line in run.stderr.splitlines() if line.startswith("mailbeacon:")]
    assert line.startswith("mailbeacon: no desktop notification service")
    assert status(desk) == "pending"


def test_an_alert_the_notifier_fails_on_is_not_taken(desk: Desk) -> None:
    desk.open_and_dispatch()
    link = f"{desk.base}/alerts?token={desk.token}"

    async def broken(title: str, details: str) -> None:
        raise NoNotificationService("the notification service refused an alert")

    with pytest.raises(NoNotificationService):
        asyncio.run(follow(link, broken, stop_after=1))
    assert status(desk) == "pending"
    shown: list[str] = []

    async def show(title: str, details: str) -> None:
        shown.append(title)

    assert asyncio.run(follow(link, show, stop_after=1)) == 1  # the next run shows it
    assert shown == ["ann@c.example opened “Renewal”"]
    assert status(desk) == "delivered"

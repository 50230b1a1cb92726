"""`mailbeacon desktop`: alerts from the stream become native notifications, through the real
desktop-notifier and a fake notification daemon on a private D-Bus session bus."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from mailbeacon.cli import main
from notifier.desktop_client import DesktopLinkError, stream_url
from tests.notifier.conftest import Desk


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


@pytest.mark.skipif(
    shutil.which("dbus-run-session") is None,
    reason="needs dbus-run-session (Debian's dbus-daemon package), which .ci/run installs",
)
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

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.registry import all_commands
from mailbeacon.cli import main
from mailbeacon.manifest import SCOPES, app_manifest, manifest_warning, usage_hint
from mailbeacon.settings import Settings, load_settings

BASE = "https://beacon.us.example"
EVENTS_URL = f"{BASE}/slack/events"


def settings(**keys: str) -> Settings:
    return load_settings(None, {f"MAILBEACON__{key}": value for key, value in keys.items()})


def urls(node: Any) -> Iterator[tuple[str, str]]:
    """Every (key, value) in the manifest whose key names a URL."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("url", "request_url"):
                yield key, value
            yield from urls(value)
    elif isinstance(node, list):
        for item in node:
            yield from urls(item)


def test_commands_buttons_and_events_go_to_slack_events_under_base_url() -> None:
    manifest = app_manifest(settings(TRACKING__BASE_URL=f"{BASE}/"))
    [command] = manifest["features"]["slash_commands"]
    assert command["url"] == EVENTS_URL
    assert manifest["settings"]["interactivity"] == {"is_enabled": True, "request_url": EVENTS_URL}
    assert manifest["settings"]["event_subscriptions"] == {
        "request_url": EVENTS_URL,
        "bot_events": ["app_home_opened"],
    }
    assert manifest["settings"]["socket_mode_enabled"] is False
    assert manifest["oauth_config"]["scopes"]["bot"] == list(SCOPES)
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True
    assert manifest["features"]["bot_user"]["display_name"] == "mailbeacon"


def test_a_base_url_with_a_path_keeps_it() -> None:
    manifest = app_manifest(settings(TRACKING__BASE_URL="https://us.example/beacon"))
    assert {url for _, url in urls(manifest)} == {"https://us.example/beacon/slack/events"}


def test_socket_mode_gives_no_request_url() -> None:
    manifest = app_manifest(settings(TRACKING__BASE_URL=BASE, SLACK__APP_TOKEN="xapp-1-A"))
    assert list(urls(manifest)) == []
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert manifest["settings"]["interactivity"] == {"is_enabled": True}
    assert manifest["settings"]["event_subscriptions"] == {"bot_events": ["app_home_opened"]}
    assert manifest["features"]["slash_commands"][0]["command"] == "/beacon"


def test_the_slash_command_is_the_configured_one() -> None:
    manifest = app_manifest(settings(SLACK__COMMAND="/mb"))
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == "/mb"
    assert command["usage_hint"] == usage_hint()


def test_the_usage_hint_names_commands_of_the_registry_help_first() -> None:
    heads = {spec.name.split()[0] for spec in all_commands()}
    words = usage_hint().split(" | ")
    assert words[0] == "help"
    assert set(words) <= heads | {"…"}
    assert {"send", "nonopeners", "stats"} <= set(words)
    assert len(usage_hint()) <= 140


@pytest.mark.parametrize(
    ("keys", "warns"),
    [
        ({"TRACKING__BASE_URL": "https://beacon.us.example"}, False),
        ({"TRACKING__BASE_URL": "https://[2606:4700::1111]"}, False),
        ({"TRACKING__BASE_URL": "https://8.8.8.8:8443"}, False),
        ({}, True),  # the default: http://127.0.0.1:8025
        ({"TRACKING__BASE_URL": "http://beacon.us.example"}, True),  # Slack posts over HTTPS
        ({"TRACKING__BASE_URL": "https://localhost:8025"}, True),
        ({"TRACKING__BASE_URL": "https://10.0.0.5"}, True),
        ({"TRACKING__BASE_URL": "https://[::1]:8025"}, True),
        ({"TRACKING__BASE_URL": "https://mailbeacon"}, True),  # a name only the LAN knows
        ({"TRACKING__BASE_URL": "https://beacon.local"}, True),
        ({"SLACK__APP_TOKEN": "xapp-1-A"}, False),  # Socket Mode: Slack is never posting to us
    ],
)
def test_a_url_slack_cannot_post_to_is_warned_about(keys: dict[str, str], warns: bool) -> None:
    assert (manifest_warning(settings(**keys)) is not None) is warns


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"data_dir: {tmp_path / 'var'}\n{text}")
    return path


def test_mailbeacon_slack_manifest_prints_it_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, f"tracking:\n  base_url: {BASE}\nslack:\n  command: /mb\n")
    assert main(["--config", str(path), "slack", "manifest"]) == 0
    output = capsys.readouterr()
    assert json.loads(output.out) == app_manifest(load_settings(path, {}))
    assert output.err == ""
    assert not (tmp_path / "var").exists()  # it reads the config only: no keys, no database


def test_it_says_in_one_line_when_slack_could_not_reach_the_urls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(config(tmp_path, "")), "slack", "manifest"]) == 0
    output = capsys.readouterr()
    assert json.loads(output.out)["settings"]["socket_mode_enabled"] is False
    assert output.err == (
        "mailbeacon: slack manifest: Slack cannot reach http://127.0.0.1:8025/slack/events: "
        "set tracking.base_url to this server's public https:// URL, or use Socket Mode "
        "(--socket-mode; no public URL needed)\n"
    )


def test_socket_mode_can_be_asked_for_before_the_app_token_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, "")
    assert main(["--config", str(path), "slack", "manifest", "--socket-mode"]) == 0
    output = capsys.readouterr()
    manifest = json.loads(output.out)
    assert manifest == app_manifest(load_settings(path, {}), socket_mode=True)
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert list(urls(manifest)) == []
    assert output.err == ""


def test_a_bad_config_is_one_line_and_no_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, "tracking:\n  base_url: beacon.us.example\n")
    assert main(["--config", str(path), "slack", "manifest"]) == 2
    output = capsys.readouterr()
    assert output.out == ""
    assert output.err == (
        "mailbeacon: config: tracking.base_url = 'beacon.us.example': "
        "expected an http:// or https:// URL\n"
    )

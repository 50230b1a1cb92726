"""Every config key, command and Slack scope is documented (and the shipped config has every
key); the Slack app manifest asks for every scope the code needs, and registers the command."""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

import yaml

from bot.registry import all_commands
from mailbeacon.cli import _parser
from mailbeacon.manifest import SCOPES, app_manifest
from mailbeacon.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def config_keys(cls: type[Any], prefix: str = "") -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            keys += config_keys(typing.cast(type[Any], hint), f"{prefix}{field.name}.")
        else:
            keys.append(prefix + field.name)
    return keys


def test_every_config_key_is_in_the_readme() -> None:
    missing = [key for key in config_keys(Settings) if f"`{key}`" not in README]
    assert missing == []


def test_the_shipped_config_lists_every_key() -> None:
    shipped = yaml.safe_load((ROOT / "config.yaml").read_text())

    def present(key: str) -> bool:
        node: Any = shipped
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    assert [key for key in config_keys(Settings) if not present(key)] == []


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def cli_commands() -> list[str]:
    """`mailbeacon …` commands as typed: `serve`, and `db upgrade` for a command of actions."""
    names = []
    for name, parser in subcommands(_parser()).items():
        actions = subcommands(parser)
        names += [f"{name} {action}" for action in actions] if actions else [name]
    return names


def test_every_command_is_in_the_readme() -> None:
    names = cli_commands()
    assert {"serve", "db upgrade", "slack manifest"} <= set(names)
    assert [name for name in names if f"`mailbeacon {name}" not in README] == []


def command_table() -> str:
    """The README's table of slash commands, as the registry has them."""
    rows = ["| command | what it does |", "| --- | --- |"]
    for spec in all_commands():
        rows.append(f"| `{spec.usage.replace('|', chr(92) + '|')}` | {spec.summary}. |")
    return "\n".join(rows)


def test_the_readme_lists_every_slash_command_as_the_registry_has_it() -> None:
    table = command_table()
    assert table in README, f"the README's command table should read:\n{table}"


def readme_section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else len(README)]


# The bot scopes each Slack Web API method that the code calls needs, from Slack's reference of
# that method (conversations.* in a DM: the im: scopes). A call of a method missing here fails
# the test below: look the method up, add it here, and add its scopes to manifest.SCOPES.
METHOD_SCOPES: dict[str, tuple[str, ...]] = {
    "auth_test": (),
    "apps_connections_open": (),  # Socket Mode: the app-level token's connections:write
    "chat_postEphemeral": ("chat:write",),
    "chat_postMessage": ("chat:write",),
    "chat_update": ("chat:write",),
    "conversations_history": ("im:history",),
    "conversations_open": ("im:write",),
    "files_upload_v2": ("files:write",),
    "users_info": ("users:read", "users:read.email"),  # the email in the profile
    "users_lookupByEmail": ("users:read.email",),
    "views_open": (),
    "views_publish": (),
    "views_push": (),
    "views_update": (),
}
SLACK_METHOD = re.compile(
    r"\.((?:admin|apps|assistant|auth|bookmarks|bots|calls|canvases|chat|conversations|dnd|emoji"
    r"|files|oauth|pins|reactions|reminders|search|stars|team|usergroups|users|views|workflows)"
    r"_[A-Za-z0-9_]+)\("
)


def slack_calls() -> dict[str, list[str]]:
    """The Slack Web API methods the code calls: method -> where."""
    calls: dict[str, list[str]] = {}
    for package in ("bot", "notifier", "mailbeacon"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                for method in SLACK_METHOD.findall(line):
                    calls.setdefault(method, []).append(f"{path.relative_to(ROOT)}:{number}")
    return calls


def test_the_manifest_asks_for_every_scope_the_code_needs() -> None:
    calls = slack_calls()
    assert {"chat_postMessage", "users_info"} <= set(calls)  # the scan finds the calls
    unknown = {method: where for method, where in calls.items() if method not in METHOD_SCOPES}
    assert unknown == {}, "add these to METHOD_SCOPES with the scopes Slack's reference gives"
    needed = {scope for method in calls for scope in METHOD_SCOPES[method]} | {"commands"}
    assert sorted(needed - set(SCOPES)) == []
    manifest = app_manifest(load_settings(None, {}))
    assert manifest["oauth_config"]["scopes"]["bot"] == list(SCOPES)


def test_every_slack_scope_is_in_the_readme() -> None:
    section = readme_section("Slack")
    assert [scope for scope in SCOPES if f"`{scope}`" not in section] == []


def test_the_manifest_registers_the_configured_slash_command() -> None:
    for command in ("/beacon", "/mb"):
        settings = load_settings(None, {"MAILBEACON__SLACK__COMMAND": command})
        [registered] = app_manifest(settings)["features"]["slash_commands"]
        assert registered["command"] == command
    assert f"`{Settings().slack.command}`" in readme_section("Slack")

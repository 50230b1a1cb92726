"""Every config key and every command is documented (and the shipped config has every key)."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml

from bot.registry import all_commands
from mailbeacon.cli import _parser
from mailbeacon.settings import Settings

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


def test_every_command_is_in_the_readme() -> None:
    [commands] = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    names = list(commands.choices)
    assert "serve" in names
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

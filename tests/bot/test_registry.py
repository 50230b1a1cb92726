"""The command registry drives parsing, help, errors and permissions: a command declared in
this test module shows up everywhere without an edit elsewhere."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bot.context import CommandFailed, Context, Reply
from bot.grammar import CommandError, Token
from bot.permissions import admin_when
from bot.registry import all_commands, command, parse, unregister, usage_lines
from tests.bot.conftest import BOSS, MEMBER, Team


@dataclass(frozen=True)
class Wave:
    at: str
    loudly: bool


def parse_wave(text: str, args: list[Token]) -> Wave:
    if not args:
        raise CommandError("say at whom to wave")
    return Wave(args[0].text, any(arg.word == "loudly" for arg in args[1:]))


@pytest.fixture
def wave() -> Iterator[None]:
    @command(
        "wave",
        usage="/beacon wave <who> [loudly]",
        summary="Wave at someone",
        parse=parse_wave,
        permission=admin_when(lambda w: w.loudly, "only an admin may wave loudly"),
        section="You",
    )
    def wave_handler(command: Wave, context: Context) -> Reply:
        return Reply(f"{context.user.email} waves at {command.at}", {"at": command.at})

    yield
    unregister("wave")


@pytest.mark.usefixtures("wave")
def test_a_command_declared_once_is_parsed_helped_suggested_and_guarded(team: Team) -> None:
    assert team.run("wave sofia").text == f"{BOSS} waves at sofia"
    help_text = team.run("help").text
    assert "/beacon wave <who> [loudly]\n    Wave at someone" in help_text
    assert team.run("help wave").data["commands"] == [
        {
            "name": "wave",
            "usage": "/beacon wave <who> [loudly]",
            "summary": "Wave at someone",
            "section": "You",
        }
    ]
    with pytest.raises(CommandError) as typo:
        parse("wvae sofia")
    assert typo.value.message == "`wvae` is not a command. Did you mean `wave`?"
    assert "/beacon wave <who> [loudly]" in typo.value.usage.splitlines()
    with pytest.raises(CommandError) as bare:
        parse("wave")
    assert str(bare.value) == "say at whom to wave\nusage: /beacon wave <who> [loudly]"
    with pytest.raises(CommandFailed, match="only an admin may wave loudly"):
        team.run("wave sofia loudly", MEMBER)
    assert team.run("wave sofia loudly", BOSS).data == {"at": "sofia"}


def test_once_unregistered_it_is_gone_everywhere() -> None:
    names = {spec.name for spec in all_commands()}
    assert "wave" not in names and "/beacon wave" not in usage_lines()
    assert {"send", "followup", "campaign", "stats", "cohort", "me", "jobs"} <= names


def test_a_name_is_registered_once() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        command("send", usage="/beacon send", summary="again")(lambda value, context: Reply(""))


def test_help_groups_the_commands_by_section(team: Team) -> None:
    text = team.run("help").text
    headings = [line for line in text.splitlines() if line.startswith("*")]
    assert headings == ["*Sending*", "*Engagement*", "*Alerts*", "*You*"]
    with pytest.raises(CommandFailed, match="there is no command `nope`"):
        team.run("help nope")

"""The command grammar takes any text: a parsed command or a CommandError, never anything else,
and never slowly. Property-based (hypothesis), over the registry's own words."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.grammar import CommandError
from bot.registry import all_commands, parse

WORDS = sorted(
    {word for spec in all_commands() for word in spec.usage.replace("|", " ").split()}
    | {"to", "as", "group", "with", "not", "opened", "include", "machine", "again", '"', "'"}
)
typed = st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=12)), max_size=25).map(" ".join)


@settings(max_examples=300, deadline=500)
@given(st.one_of(st.text(max_size=200), typed))
def test_any_text_parses_or_says_what_is_wrong(text: str) -> None:
    try:
        parsed = parse(text)
    except CommandError as exc:
        assert exc.message and "Traceback" not in str(exc)
        return
    assert parsed.spec.name in {spec.name for spec in all_commands()}


@settings(max_examples=50, deadline=500)
@given(st.integers(min_value=1_000, max_value=200_000))
def test_long_text_is_no_slower_than_its_length(length: int) -> None:
    for text in ("send outage to " + "a" * length, '"' * length, "alerts add " * (length // 11)):
        with contextlib.suppress(CommandError):
            parse(text)

"""Hostile templates are refused quickly, by name and limit, and the others still load."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine

from outreach import templates
from outreach.templates import (
    MAX_RENDER_SECONDS,
    RenderError,
    TemplateFile,
    TemplateFileError,
    check,
    list_templates,
    load_template,
    render,
    sync_templates,
)

FORMATS = ["html", "markdown"]
BIGGER = "that would make {} characters or items, over the limit of 1,000,000"
QUICKLY = 3.0  # seconds: every limit here is refused well within this


@contextmanager
def quickly(seconds: float = QUICKLY) -> Iterator[None]:
    start = time.monotonic()
    yield
    assert time.monotonic() - start < seconds


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "{{ 9**(9**9) }}",
            "body line 1: refused: 9 ** 387420489 has about 1,228,093,894 bits, "
            "over the limit of 4,096",
        ),
        ("Hi\n{{ 'x' * 10**10 }}", f"body line 2: refused: {BIGGER.format('10,000,000,000')}"),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "body line 1: refused: range() of more than the limit of 10,000 numbers",
        ),
        (
            "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
            "body line 1: refused: rendering took longer than the limit of 1 s",
        ),
        (
            "{% for i in range(10000) %}{{ 'x' * 10000 }}{% endfor %}",
            "body: refused: over 1,000,000 characters of output, the limit for a body",
        ),
        ("{{ 'x'|center(1000000000) }}", f"body line 1: refused: {BIGGER.format('1,000,000,000')}"),
        ("{{ 'x'.ljust(1000000000) }}", f"body line 1: refused: {BIGGER.format('1,000,000,000')}"),
        ("{{ '%0999999999d' % 1 }}", f"body line 1: refused: {BIGGER.format('999,999,999')}"),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(60) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            f"body line 1: refused: {BIGGER.format('1,048,576')}",
        ),
        (
            "{% set s = 'x' * 900000 %}{{ s ~ s }}",
            f"body line 1: refused: {BIGGER.format('1,800,000')}",
        ),
        (
            "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
            "body line 1: refused: nested or recursing too deeply",
        ),
    ],
)
def test_a_hostile_template_is_refused_quickly_naming_the_limit(
    format: str, body: str, message: str
) -> None:
    hostile = TemplateFile(key="t", subject="Hi", body=body, format=format)
    with quickly(MAX_RENDER_SECONDS + 1):
        check(hostile)  # compiling runs none of it
        with pytest.raises(RenderError, match=f"^template 't', {re.escape(message)}$"):
            render(hostile, {})


def test_a_hostile_subject_is_refused_too() -> None:
    hostile = TemplateFile(key="t", subject="{{ 'x' * 10**10 }}", body="Hi", format="html")
    with quickly(), pytest.raises(RenderError, match=r"^template 't', subject: refused: that"):
        render(hostile, {})


def test_compiling_a_long_template_is_refused_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(templates, "MAX_COMPILE_SECONDS", 0.2)  # a slow machine takes longer
    hostile = TemplateFile(
        key="t", subject="Hi", body="{{ [" + "1," * 49_000 + "1] }}", format="html"
    )
    with quickly(1.0), pytest.raises(RenderError) as raised:
        check(hostile)
    assert str(raised.value) == (
        "template 't', body: refused: checking the template took longer than the limit of 0.2 s"
    )


def test_deep_nesting_is_refused_not_a_recursion_traceback() -> None:
    hostile = TemplateFile(key="t", subject="Hi", body="{{ " + "(" * 5000 + "1 }}", format="html")
    with quickly(), pytest.raises(RenderError, match="nested or recursing too deeply"):
        check(hostile)


ALIAS_BOMB = (
    "---\n"
    "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(
        f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
        for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "subject: Hi\n"
    "description: *i\n"
    "---\n"
    "Hi\n"
)


def test_a_yaml_alias_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.md"
    path.write_text(ALIAS_BOMB)
    with quickly(), pytest.raises(TemplateFileError) as raised:
        load_template(path)
    assert str(raised.value) == (
        f"{path}: the front matter uses more than 20 aliases (`*name`): write the values out"
    )


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "ok.md"
    path.write_text("---\nsubject: &s Hi\ndescription: *s\n---\nHi\n")
    assert load_template(path).description == "Hi"


def test_an_oversized_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.html"
    path.write_text("---\nsubject: Hi\n---\n" + "x" * 100_000)
    with pytest.raises(TemplateFileError, match="100,020 bytes, over the limit of 100,000"):
        load_template(path)


def test_sync_skips_the_hostile_files_and_keeps_the_others(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "bomb.md").write_text(ALIAS_BOMB)
    (tmp_path / "deep.html").write_text("---\nsubject: Hi\n---\n{{ " + "(" * 5000 + "1 }}")
    (tmp_path / "power.md").write_text("---\nsubject: Hi\n---\n{{ 9**(9**9) }}")
    (tmp_path / "good.md").write_text("---\nsubject: Hi {{ enduser.name }}\n---\nHello\n")
    with quickly():
        report = sync_templates(engine, tmp_path)
    assert sorted(report.new) == ["good", "power"]  # power is refused when it renders
    assert [(bad.name, bad.reason.split(":")[0]) for bad in report.bad_files] == [
        ("bomb.md", "the front matter uses more than 20 aliases (`*name`)"),
        ("deep.html", "body"),
    ]
    with engine.connect() as connection:
        good = {stored.template.key: stored for stored in list_templates(connection)}["good"]
    assert render(good.template, {"enduser": {"name": "Ann"}}).subject == "Hi Ann"

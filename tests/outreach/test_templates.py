from __future__ import annotations

from pathlib import Path

import pytest

from outreach.templates import TemplateFileError, html_to_text, load_template

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "templates"


def test_the_example_templates_load() -> None:
    outage = load_template(EXAMPLES / "outage.html")
    assert (outage.key, outage.format) == ("outage", "html")
    assert outage.subject.startswith("Service incident on {{ company.name }}")
    assert outage.body.startswith("<!doctype html>")
    reminder = load_template(EXAMPLES / "invoice-reminder.md")
    assert (reminder.format, reminder.track_opens, reminder.track_clicks) == (
        "markdown",
        False,
        True,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Hello", "no front matter"),
        ("---\nsubject: Hi\nHello", "not closed"),
        ("---\nsubject: [oops\n---\nHello", "not valid YAML"),
        ("---\ndescription: no subject\n---\nHello", "needs a 'subject: …' line"),
    ],
)
def test_a_broken_template_file_names_the_file_and_the_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "broken.md"
    path.write_text(text)
    with pytest.raises(TemplateFileError, match=message) as raised:
        load_template(path)
    assert str(path) in str(raised.value)


def test_html_becomes_readable_text_with_links_written_out() -> None:
    html = (
        "<html><head><title>x</title><style>p {}</style></head><body>"
        "<p>Hi   Ann,</p><p>See <a href='https://a.example/x?y=1'>the report</a> and "
        "<a href='mailto:s@a.example'>write</a>.</p><p>&amp; bye</p></body></html>"
    )
    assert html_to_text(html) == (
        "Hi Ann,\n\nSee the report (https://a.example/x?y=1) and write.\n\n& bye\n"
    )

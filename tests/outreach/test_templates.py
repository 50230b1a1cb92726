from __future__ import annotations

import hashlib
import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from html import escape as escape_html
from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import SecurityError
from markdown_it import MarkdownIt
from sqlalchemy import Engine, select

from outreach.templates import (
    BadFile,
    RenderError,
    SyncReport,
    TemplateFile,
    TemplateFileError,
    check,
    escape_markdown,
    html_to_text,
    latest_template,
    list_templates,
    load_template,
    read_folder,
    render,
    render_all,
    sync_templates,
)
from store.schema import templates
from tracking.instrument import TrackingFlags, instrument
from tracking.tokens import TokenSigner

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


# --- Rendering -------------------------------------------------------------------------------

CONTEXT: dict[str, Any] = {
    "enduser": {
        "name": "Ann",
        "email": "ann@acme.example",
        "seats": 3,
        "products": [{"sku": "A"}, {"sku": "B", "seats": 2}],
    },
    "company": {"name": "Acme", "plan": "pro"},
    "sender": {"name": "Alex"},
    "campaign": {"name": "Spring"},
}
FORMATS = ["html", "markdown"]
CAN_USE = "a template can use enduser, company, sender and campaign"


def template(
    body: str, format: str = "markdown", subject: str = "Hi", key: str = "t"
) -> TemplateFile:
    return TemplateFile(key=key, subject=subject, body=body, format=format)


def with_enduser(**values: Any) -> dict[str, Any]:
    return {**CONTEXT, "enduser": {**CONTEXT["enduser"], **values}}


TRICKY = [
    "*bold* <script>",
    "_under_ and __strong__",
    "[win a prize](https://evil.example)",
    "![pixel](https://evil.example/p.gif)",
    "<https://evil.example> <ann@evil.example>",
    "# heading",
    "1. item",
    "- item",
    "> quote",
    "`code` ~~gone~~",
    "&amp; &copy; &#65;",
    "back\\slash \\*",
    "a  \n\n    b",
    "---",
    "Zoë | Łukasz",
]


@pytest.mark.parametrize("value", TRICKY)
def test_an_escaped_value_renders_as_exactly_its_text(value: str) -> None:
    expected = escape_html(" ".join(value.split()), quote=False)
    rendered = MarkdownIt("commonmark", {"html": False}).render(escape_markdown(value))
    assert rendered == f"<p>{expected}</p>\n"


@pytest.mark.parametrize(
    ("value", "html_line"),
    [
        ("*bold* <script>", "<p>Hi *bold* &lt;script&gt;,</p>"),
        ("[win](https://evil.example)", "<p>Hi [win](https://evil.example),</p>"),
        ("Ann_Lee & Co", "<p>Hi Ann_Lee &amp; Co,</p>"),
        ("<b>Ann</b>", "<p>Hi &lt;b&gt;Ann&lt;/b&gt;,</p>"),
    ],
)
def test_markdown_shows_outside_data_literally_in_html_and_as_is_in_text(
    value: str, html_line: str
) -> None:
    body = "Hi {{ enduser.name }},\n\n**Thanks** from [us](https://yourcompany.example).\n"
    rendered = render(template(body), with_enduser(name=value))
    assert rendered.html == (
        "<!doctype html>\n<html><body>\n"
        f"{html_line}\n"
        '<p><strong>Thanks</strong> from <a href="https://yourcompany.example">us</a>.</p>\n'
        "</body></html>\n"
    )
    # The text part is for reading: no Markdown marks, each link written out (to be tracked).
    assert rendered.text == f"Hi {value},\n\nThanks from us (https://yourcompany.example).\n"


@pytest.mark.parametrize(
    ("body", "html_part"),
    [
        (
            "<b>raw</b> <script>x()</script>",
            "<p>&lt;b&gt;raw&lt;/b&gt; &lt;script&gt;x()&lt;/script&gt;</p>",
        ),
        ("{{ '*const*' }}", "<p>*const*</p>"),
        # The template's own Markdown from macros and blocks is not escaped a second time.
        (
            "{% macro b(x) %}**{{ x }}**{% endmacro %}{{ b(enduser.name) }}",
            "<p><strong>A*n</strong></p>",
        ),
        ("{% set g %}_Hi_ {{ enduser.name }}{% endset %}{{ g }}", "<p><em>Hi</em> A*n</p>"),
        # `|safe` is how a template says "this value is Markdown".
        ("{{ '_yes_'|safe }}", "<p><em>yes</em></p>"),
        (
            "{% for p in enduser.products %}\n- {{ p.sku }}\n{% endfor %}\n",
            "<ul>\n<li>A</li>\n<li>B</li>\n</ul>",
        ),
    ],
)
def test_markdown_templates(body: str, html_part: str) -> None:
    context = with_enduser(name="A*n")
    assert render(template(body), context).html == (
        f"<!doctype html>\n<html><body>\n{html_part}\n</body></html>\n"
    )


def test_html_escapes_outside_data_and_its_text_part_shows_it_as_is() -> None:
    body = (
        "<p>Hi {{ enduser.name }},</p>\n"
        "<p><a href='https://a.example/?c={{ company.name }}'>Go</a></p>"
    )
    context = {**with_enduser(name="<script>x()</script> *bold*"), "company": {"name": "A&B"}}
    rendered = render(template(body, "html"), context)
    assert rendered.html == (
        "<p>Hi &lt;script&gt;x()&lt;/script&gt; *bold*,</p>\n"
        "<p><a href='https://a.example/?c=A&amp;B'>Go</a></p>"
    )
    assert rendered.text == "Hi <script>x()</script> *bold*,\n\nGo (https://a.example/?c=A&B)\n"


@pytest.mark.parametrize("format", FORMATS)
def test_the_subject_is_one_line_of_plain_text(format: str) -> None:
    subject = "{{ enduser.name }}\n  at {{ company.name }}"
    context = {**with_enduser(name="Ann\r\nBcc: eve@evil.example"), "company": {"name": "A&B <x>"}}
    rendered = render(template("Hi", format, subject=subject), context)
    assert rendered.subject == "Ann Bcc: eve@evil.example at A&B <x>"


@pytest.mark.parametrize(
    ("name", "subject", "text_starts"),
    [
        (
            "outage.html",
            "Service incident on Acme's account: what happened",
            "Hi Ann,\n\nYesterday",
        ),
        ("webinar.md", "Ann, join our webinar on reporting", "Hi Ann,\n\nEvery first Thursday"),
        ("invoice-reminder.md", "Invoice for Acme is overdue", "Hello Ann,\n\nOur invoice to Acme"),
    ],
)
def test_the_example_templates_render(name: str, subject: str, text_starts: str) -> None:
    example = load_template(EXAMPLES / name)
    check(example)
    rendered = render(example, CONTEXT)
    assert rendered.subject == subject
    assert rendered.text.startswith(text_starts)
    assert rendered.text.endswith("Alex\n")
    assert rendered.html.startswith("<!doctype html>")
    assert '<a href="https://' in rendered.html


def test_one_undefined_variable_stops_the_whole_send_out_and_names_line_and_recipient() -> None:
    body = "Hi {{ enduser.name }},\n\nFor {{ company.name }}:\nyour plan is {{ company.plan }}.\n"
    recipients = [
        (
            f"user{n}@acme.example",
            {
                "enduser": {"name": f"User {n}"},
                "company": {"name": "Acme"} if n == 500 else {"name": "Acme", "plan": "pro"},
            },
        )
        for n in range(1, 601)
    ]
    with pytest.raises(RenderError) as raised:
        render_all(template(body, key="outage"), recipients)
    assert str(raised.value) == (
        "template 'outage', body line 4: company.plan is not defined "
        "(rendering for user500@acme.example)"
    )
    assert (raised.value.part, raised.value.line, raised.value.recipient) == (
        "body",
        4,
        "user500@acme.example",
    )
    del recipients[499]
    assert len(render_all(template(body, key="outage"), recipients)) == 599


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize(
    ("body", "line", "problem"),
    [
        ("a\nb\n{{ company.region }}", 3, "company.region is not defined"),
        (
            "{% for p in enduser.products %}\n- {{ p.sku }}: {{ p.seats }}\n{% endfor %}",
            2,
            "enduser.products[0].seats is not defined",
        ),
        (
            "{% macro tier() %}\n{{ company.tier }}\n{% endmacro %}\n\n{{ tier() }}",
            2,
            "company.tier is not defined",
        ),
        ("x\n{% if company.region == 'EU' %}\nhi\n{% endif %}", 2, "company.region is not defined"),
        ("{{ company.address.city }}", 1, "company.address is not defined"),
        # A value that is not a mapping or a list does not know its name.
        ("{{ enduser.name.first }}", 1, "'str object' has no attribute 'first'"),
        ("\n\n{{ enduser.products[7] }}", 3, "enduser.products[7] is not defined"),
        ("{{ campaign['launch date'] }}", 1, "campaign['launch date'] is not defined"),
        ("{{ enduser.name }}\n{{ enduser.seats / 0 }}", 2, "ZeroDivisionError: division by zero"),
    ],
)
def test_a_render_error_names_the_body_line_and_the_variable(
    format: str, body: str, line: int, problem: str
) -> None:
    with pytest.raises(RenderError) as raised:
        render(template(body, format), CONTEXT)
    assert str(raised.value) == f"template 't', body line {line}: {problem}"


@pytest.mark.parametrize(
    ("context", "message"),
    [
        (CONTEXT, "template 't', subject: company.region is not defined"),
        ({"enduser": {"name": "Ann"}}, "template 't', subject: company.region is not defined"),
        ({**CONTEXT, "company": None}, "template 't', subject: 'None' has no attribute 'region'"),
    ],
)
def test_a_render_error_in_the_subject_names_the_subject(
    context: dict[str, Any], message: str
) -> None:
    with pytest.raises(RenderError, match=f"^{re.escape(message)}$"):
        render(template("Hi", subject="News for {{ company.region }}"), context)


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize(
    ("subject", "body", "message"),
    [
        ("Hi", "Hi\n{{ enduser.name }\n", "body line 2: syntax error: unexpected '}'"),
        ("Hi", "a\nb\n{% endif %}", "body line 3: syntax error: Encountered unknown tag 'endif'."),
        (
            "Hi",
            "x\n{{ enduser.name|shout }}",
            "body line 2: syntax error: No filter named 'shout'.",
        ),
        (
            "Hi",
            "\n\n{{ endusr.name }}",
            f"body line 3: unknown name 'endusr': {CAN_USE}",
        ),
        ("Hi {{", "Hi", "subject: syntax error: unexpected 'end of template'"),
        (
            "Hi {{ user }}",
            "Hi",
            f"subject: unknown name 'user': {CAN_USE}",
        ),
    ],
)
def test_syntax_errors_are_found_before_anything_is_rendered(
    format: str, subject: str, body: str, message: str
) -> None:
    broken = template(body, format, subject=subject)
    with pytest.raises(RenderError, match=f"^template 't', {re.escape(message)}$"):
        check(broken)
    with pytest.raises(RenderError, match=f"^template 't', {re.escape(message)}$"):
        render_all(broken, [("ann@acme.example", CONTEXT)])


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize(
    "expression",
    [
        "''.__class__",
        "''.__class__.__mro__[1].__subclasses__()",
        "lipsum.__globals__",
        "cycler.__init__.__globals__",
        "''|attr('__class__')",
        "enduser|attr('__class__')",
        "'{0.__class__}'.format(enduser)",
        "'{x.__class__.__base__}'.format_map({'x': enduser})",
        "cycler.mro()",
        "namespace.mro()",
        "enduser.name.__len__()",
        "enduser.update({'name': 'Eve'})",
        "enduser.products.append('C')",
        "enduser._path",
    ],
)
def test_the_sandbox_refuses_escapes(format: str, expression: str) -> None:
    with pytest.raises(RenderError) as raised:
        render(template(f"Hi\n{{{{ {expression} }}}}", format), CONTEXT)
    assert str(raised.value).startswith(
        "template 't', body line 2: refused, the template tried something unsafe: "
    )
    assert isinstance(raised.value.__cause__, SecurityError)


# --- The store -------------------------------------------------------------------------------

T1 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
T2 = T1 + timedelta(days=1)
T3 = T1 + timedelta(days=2)


def write(folder: Path, name: str, body: str, subject: str = "Hi") -> None:
    (folder / name).write_text(f"---\nsubject: {json.dumps(subject)}\n---\n{body}")


def test_sync_stores_new_and_changed_files_as_new_versions(engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    shutil.copytree(EXAMPLES, folder)
    first = sync_templates(engine, folder, now=T1)
    assert first.summary() == (
        "templates: 3 new (invoice-reminder, outage, webinar), 0 changed, 0 unchanged, "
        "0 bad files skipped"
    )

    write(folder, "webinar.md", "Hi {{ enduser.name }}, see you **Thursday**.\n")
    write(folder, "launch.md", "Hi {{ enduser.name }}, it is out.\n", subject="Launch")
    write(folder, "broken.md", "Hi\n{{ enduser.name }\n")
    second = sync_templates(engine, folder, now=T2)
    assert second.summary() == (
        "templates: 1 new (launch), 1 changed (webinar v2), 2 unchanged, 1 bad file skipped\n"
        "broken.md: body line 2: syntax error: unexpected '}'"
    )

    write(folder, "webinar.md", "Hi {{ enduser.name }}, see you **Friday**.\n")
    third = sync_templates(engine, folder, now=T3)
    assert (third.new, third.changed, third.unchanged) == (
        [],
        [("webinar", 3)],
        ["invoice-reminder", "launch", "outage"],
    )
    assert (
        sync_templates(engine, folder, now=T3)
        .summary()
        .startswith("templates: 0 new, 0 changed, 4 unchanged, 1 bad file skipped\n")
    )

    with engine.connect() as connection:
        newest = latest_template(connection, "webinar")
        assert newest is not None
        assert newest.version == 3
        assert newest.template == load_template(folder / "webinar.md")
        assert latest_template(connection, "broken") is None
        assert [(s.template.key, s.version) for s in list_templates(connection)] == [
            ("invoice-reminder", 1),
            ("launch", 1),
            ("outage", 1),
            ("webinar", 3),
        ]
        t = templates.c
        rows = connection.execute(
            select(t.version, t.checksum, t.created_at)
            .where(t.key == "webinar")
            .order_by(t.version)
        ).all()
    assert [(row.version, row.created_at) for row in rows] == [(1, T1), (2, T2), (3, T3)]
    assert rows[-1].checksum == hashlib.sha256((folder / "webinar.md").read_bytes()).hexdigest()


def test_a_stored_template_renders_like_its_file(engine: Engine, tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "templates")
    sync_templates(engine, tmp_path / "templates", now=T1)
    with engine.connect() as connection:
        stored = latest_template(connection, "outage")
    assert stored is not None
    template_id, version, stored_template = stored
    assert (isinstance(template_id, int), version) == (True, 1)
    assert render(stored_template, CONTEXT) == render(
        load_template(EXAMPLES / "outage.html"), CONTEXT
    )


@pytest.mark.parametrize(
    ("files", "bad"),
    [
        ({"a.md": b"Hello"}, "a.md: no front matter (start the file with a line '---')"),
        (
            {"a.md": b"---\nsubject: Hi\n---\n\xff"},
            "a.md: not UTF-8 text (bad byte at offset 20): save it as UTF-8",
        ),
        (
            {"a.md": b"---\nsubject: Hi\n---\n{{ enduser.nme }"},
            "a.md: body line 1: syntax error: unexpected '}'",
        ),
        (
            {"a.md": b"---\nsubject: '{{ user }}'\n---\nHi"},
            f"a.md: subject: unknown name 'user': {CAN_USE}",
        ),
        (
            {"my offer.md": b"---\nsubject: Hi\n---\nHi"},
            "my offer.md: the file name gives the key 'my offer'; rename the file: "
            "letters, digits, '-', '_' and '.', at most 100 characters",
        ),
        (
            {"a.md": b"---\nsubject: Hi\n---\nHi", "a.html": b"---\nsubject: Hi\n---\nHi"},
            "a.html: a.html, a.md give the same key 'a': keep one of them\n"
            "a.md: a.html, a.md give the same key 'a': keep one of them",
        ),
    ],
)
def test_bad_files_are_skipped_with_the_reason(
    tmp_path: Path, files: dict[str, bytes], bad: str
) -> None:
    for name, data in {**files, "good.md": b"---\nsubject: Hi\n---\nHi", ".#good.md": b""}.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "notes.txt").write_text("not a template")
    found, skipped = read_folder(tmp_path)
    assert [item.name for item in found] == ["good.md"]
    assert "\n".join(f"{file.name}: {file.reason}" for file in skipped) == bad


def test_windows_line_endings_and_a_byte_order_mark_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "crlf.md"
    path.write_bytes("\ufeff---\r\nsubject: Hi\r\n---\r\nHello\r\n".encode())
    assert load_template(path) == TemplateFile("crlf", "Hi", "Hello\n", "markdown")


def test_a_missing_folder_is_named() -> None:
    with pytest.raises(TemplateFileError, match="no-such-folder: no such folder"):
        read_folder(Path("no-such-folder"))


@pytest.mark.parametrize(
    ("report", "summary"),
    [
        (SyncReport(), "templates: 0 new, 0 changed, 0 unchanged, 0 bad files skipped"),
        (
            SyncReport(
                new=["outage"],
                changed=[("webinar", 2)],
                unchanged=["invoice"],
                bad_files=[BadFile("x.md", "no front matter")],
            ),
            "templates: 1 new (outage), 1 changed (webinar v2), 1 unchanged, 1 bad file skipped\n"
            "x.md: no front matter",
        ),
        (
            SyncReport(new=["a", "b"], changed=[("c", 3), ("d", 9)]),
            "templates: 2 new (a, b), 2 changed (c v3, d v9), 0 unchanged, 0 bad files skipped",
        ),
    ],
)
def test_the_sync_summary(report: SyncReport, summary: str) -> None:
    assert report.summary() == summary


def test_the_text_part_of_a_markdown_email_is_readable_and_its_links_are_tracked() -> None:
    body = "Hi,\n\n[Save your seat](https://yourcompany.example/webinar) or *reply*.\n"
    rendered = render(template(body), with_enduser(name="Ann"))
    assert (
        rendered.text == "Hi,\n\nSave your seat (https://yourcompany.example/webinar) or reply.\n"
    )
    tracked = instrument(
        rendered.html,
        rendered.text,
        email_id=7,
        flags=TrackingFlags(opens=True, clicks=True),
        signer=TokenSigner(["k" * 32]),
        base_url="https://t.example",
        honeypot=False,
    )
    assert "https://yourcompany.example/webinar" not in tracked.text
    assert "Save your seat (https://t.example/t/c/" in tracked.text

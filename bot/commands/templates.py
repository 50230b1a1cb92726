"""`/beacon templates` and `/beacon preview`: what can be sent, and how it reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.blocks import Block, escape, header, quote, renders, rows, section, text_sections
from bot.blocks import context as note
from bot.context import CommandFailed, Context, Reply, find_template
from bot.grammar import CommandError, Token
from bot.registry import command
from bot.sendout import recipient_contexts
from outreach.audience import resolve_audience
from outreach.filters import AudienceError
from outreach.templates import RenderError, list_templates, render_all


@command(
    "templates",
    usage="/beacon templates",
    summary="The templates you can send, with what they track",
    section="Sending",
)
def templates(_: None, context: Context) -> Reply:
    with context.engine.connect() as connection:
        stored = list_templates(connection)
    if not stored:
        return Reply(
            "No templates yet: add files to the templates folder and run "
            "`mailbeacon templates sync`.",
            {"templates": []},
        )
    lines, data = [], []
    for item in stored:
        t = item.template
        tracked = ", ".join(
            k for k, on in (("opens", t.track_opens), ("clicks", t.track_clicks)) if on
        )
        lines.append(
            f"{t.key} (v{item.version}): {t.description or t.subject} "
            f"[tracks {tracked or 'nothing'}]"
        )
        data.append(
            {
                "key": t.key,
                "version": item.version,
                "description": t.description,
                "track_opens": t.track_opens,
                "track_clicks": t.track_clicks,
            }
        )
    return Reply("\n".join(lines), {"templates": data})


@renders("templates")
def templates_blocks(reply: Reply) -> list[Block]:
    items = reply.data["templates"]
    if not items:
        return [
            section(
                "No templates yet: add files to the templates folder and run "
                "`mailbeacon templates sync`."
            )
        ]
    return [header("Templates"), *rows(items, _template_row)]


def _template_row(t: dict[str, Any]) -> str:
    tracked = [k for k in ("opens", "clicks") if t[f"track_{k}"]]
    line = f"*{escape(t['key'])}* (v{t['version']}) · tracks {' and '.join(tracked) or 'nothing'}"
    return line + (f"\n{escape(t['description'])}" if t["description"] else "")


@dataclass(frozen=True)
class Preview:
    template: str
    to: str


def parse_preview(text: str, args: list[Token]) -> Preview:
    if len(args) != 3 or args[1].word != "to":
        raise CommandError("say which template and which email address")
    return Preview(template=args[0].text, to=args[2].text)


@command(
    "preview",
    usage="/beacon preview <template> to <email>",
    summary="The email a template makes for one enduser; nothing is sent or stored",
    parse=parse_preview,
    section="Sending",
)
def preview(command: Preview, context: Context) -> Reply:
    # Never committed: an unknown address would become an enduser, which a preview must not do.
    with context.engine.connect() as connection:
        connection.begin()  # it may write (then roll back): a write transaction from the start
        stored = find_template(connection, command.template)
        try:
            audience = resolve_audience(connection, command.to, force=True)
        except AudienceError as exc:
            raise CommandFailed(f"in the address:\n{exc.pretty(command.to)}") from None
        recipients = recipient_contexts(
            connection, audience.endusers, context.user, command.template
        )
    if not recipients:
        raise CommandFailed(f"nobody matches `{command.to}`: give one enduser's email address")
    try:
        [rendered] = render_all(stored.template, recipients[:1])
    except RenderError as exc:
        raise CommandFailed(str(exc)) from None
    text = f"Subject: {rendered.subject}\n\n{rendered.text}"
    return Reply(text, {"subject": rendered.subject, "html": rendered.html, "text": rendered.text})


@renders("preview")
def preview_blocks(reply: Reply) -> list[Block]:
    return [
        header("Preview"),
        section(f"*Subject:* {escape(reply.data['subject'])}"),
        *text_sections(quote(reply.data["text"]))[:40],
        note("Nothing was sent or stored; the HTML part is not shown here."),
    ]

"""The `mailbeacon` command (DESIGN §8)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from mailbeacon.settings import ConfigError, Settings, load_settings, with_generated_keys
from outreach.accounts import list_mailboxes
from store.engine import make_engine
from store.migrate import current_revision, head_revision, upgrade
from store.schema import (
    campaigns,
    emails,
    endusers,
    events,
    jobs,
    set_aside_hits,
    subscriptions,
)

# What `init` puts in a templates folder that does not exist yet: one template to copy from.
EXAMPLE_TEMPLATE = (
    "welcome.md",
    """---
subject: "Welcome aboard, {{ enduser.name }}"
description: An example to copy; the file name (welcome) is the template's key
track:
  opens: true
  clicks: true
---
Hi {{ enduser.name }},

Thanks for choosing us. [Our getting-started guide](https://yourcompany.example/start) takes
five minutes.

{{ sender.name }}
""",
)


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """`1 alert`, `2 alerts`."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def _version() -> str:
    try:
        return importlib.metadata.version("mailbeacon")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree never installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailbeacon", description="Tracked emails from your own mailbox, driven from Slack."
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="config file (default: $MAILBEACON_CONFIG, else ./config.yaml if present)",
    )
    parser.add_argument("--version", action="version", version=f"mailbeacon {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server (tracking endpoints and more)")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.add_argument(
        "--role",
        choices=["all", "web", "worker"],
        default="all",
        help="all: endpoints and jobs (one machine); web: endpoints only; worker: jobs only",
    )

    demo = commands.add_parser("demo", help="the whole loop offline in a temporary folder")
    demo.add_argument("--keep", action="store_true", help="keep the folder to look around in")

    desktop = commands.add_parser("desktop", help="show your desktop alerts as notifications")
    desktop.add_argument("link", help="your alerts link (…/alerts?token=…)")
    desktop.add_argument("--exit-after", type=int, metavar="N", help="stop after N alerts")
    commands.add_parser("init", help="create the data folder, keys, database and templates folder")
    commands.add_parser("status", help="where the data lives and what it holds")

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("upgrade", help="migrate the database to the newest schema")

    cmd = commands.add_parser("cmd", help='run a /beacon command: mailbeacon cmd "help" --as you@…')
    cmd.add_argument("text", help="what you would type after /beacon")
    cmd.add_argument("--as", dest="who", required=True, metavar="EMAIL", help="an internal user")
    cmd.add_argument("--yes", action="store_true", help="confirm (a send goes out)")
    cmd.add_argument("--json", action="store_true", help="print the result as JSON")
    cmd.add_argument(
        "--no-wait", action="store_true", help="return at once when the command starts a job"
    )

    connect = commands.add_parser("connect", help="connect a user's Gmail or Outlook mailbox")
    connect.add_argument("provider", choices=["gmail", "outlook"])
    connect.add_argument(
        "--as", dest="who", required=True, metavar="EMAIL", help="an internal user"
    )

    template_cmd = commands.add_parser("templates", help="template files")
    template_actions = template_cmd.add_subparsers(dest="templates_command", required=True)
    template_actions.add_parser("sync", help="store new and changed template files as versions")

    slack = commands.add_parser("slack", help="the Slack app")
    slack_actions = slack.add_subparsers(dest="slack_command", required=True, metavar="ACTION")
    manifest = slack_actions.add_parser(
        "manifest", help="print the app manifest for Slack's 'create app from manifest' (JSON)"
    )
    manifest.add_argument(
        "--socket-mode",
        action="store_true",
        default=None,
        help="for Socket Mode, with no request URLs (default: when slack.app_token is set)",
    )

    importer = commands.add_parser("import", help="import companies or endusers (CSV or JSON)")
    importer.add_argument("file", type=Path)
    importer.add_argument("--kind", choices=["companies", "endusers"], help="default: from name")
    importer.add_argument("--dry-run", action="store_true", help="report, but change nothing")
    return parser


def _desktop(link: str, exit_after: int | None) -> int:
    from notifier.desktop_client import DesktopLinkError, NoNotificationService, follow_natively

    print("mailbeacon: showing your alerts as desktop notifications; Ctrl-C stops", flush=True)
    try:
        shown = asyncio.run(follow_natively(link, stop_after=exit_after))
    except (DesktopLinkError, NoNotificationService) as exc:
        print(f"mailbeacon: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(f"mailbeacon: {counted(shown, 'alert')} shown", flush=True)
    return 0


def _config_path(given: Path | None) -> Path | None:
    if given is not None:
        return given
    if os.environ.get("MAILBEACON_CONFIG"):
        return Path(os.environ["MAILBEACON_CONFIG"])
    default = Path("config.yaml")
    return default if default.exists() else None


def safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "desktop":  # a client: no config, no database
        return _desktop(args.link, args.exit_after)
    if args.command == "demo":  # its own temporary folder and settings: touches nothing here
        from mailbeacon.demo import run_demo

        return run_demo(keep=args.keep)
    environ = dict(os.environ)
    # Command-line overrides go in like environment overrides, so derived keys follow them.
    if args.command == "serve" and args.host:
        environ["MAILBEACON__SERVER__HOST"] = args.host
    if args.command == "serve" and args.port:
        environ["MAILBEACON__SERVER__PORT"] = str(args.port)
    try:
        settings = load_settings(_config_path(args.config), environ)
        if args.command == "slack":  # reads the config only: no keys made, no database
            return _slack_manifest(settings, args.socket_mode)
        return _run(args, with_generated_keys(settings))
    except ConfigError as exc:
        print(f"mailbeacon: config: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        print(f"mailbeacon: cannot use the database: {reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace, settings: Settings) -> int:
    engine = make_engine(settings.database)
    try:
        return _command(args, settings, engine)
    finally:
        engine.dispose()  # PostgreSQL's pooled connections are closed, not left to the GC


def _command(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    if args.command == "serve":
        from mailbeacon.cmd import prepare
        from mailbeacon.serve import serve

        upgrade(engine)
        prepare(settings, engine)
        return serve(settings, engine, args.role)
    if args.command in ("init", "db"):
        upgrade(engine)
        print(f"database ready at {safe_url(settings.database.url)} (schema {head_revision()})")
        print(f"data folder: {settings.data_dir}")
        if args.command == "init":
            _init_templates(Path(settings.outreach.templates_dir))
        return 0
    if args.command == "import":
        from outreach.importer import ImportFileError, import_file

        upgrade(engine)
        try:
            report = import_file(engine, args.file, args.kind, dry_run=args.dry_run)
        except ImportFileError as exc:
            print(f"mailbeacon: import: {exc}", file=sys.stderr)
            return 1
        print(report.summary())
        return 1 if report.bad_rows else 0  # the good rows are in; scripts still see the bad
    if args.command == "cmd":
        from mailbeacon.cmd import run_cmd

        upgrade(engine)
        return run_cmd(
            settings,
            engine,
            args.text,
            args.who,
            yes=args.yes,
            as_json=args.json,
            wait=not args.no_wait,
        )
    if args.command == "connect":
        from mailbeacon.cmd import connect_link

        upgrade(engine)
        return connect_link(settings, engine, args.provider, args.who)
    if args.command == "templates":
        from outreach.templates import TemplateFileError, sync_templates

        upgrade(engine)
        try:
            print(sync_templates(engine, Path(settings.outreach.templates_dir)).summary())
        except TemplateFileError as exc:
            print(f"mailbeacon: templates: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "status":
        return _status(settings, engine)
    raise AssertionError(f"unhandled command {args.command}")


def _slack_manifest(settings: Settings, socket_mode: bool | None) -> int:
    from mailbeacon.manifest import app_manifest, manifest_warning

    print(json.dumps(app_manifest(settings, socket_mode), indent=2, ensure_ascii=False))
    if warning := manifest_warning(settings, socket_mode):
        print(f"mailbeacon: slack manifest: {warning}", file=sys.stderr)
    return 0


def _init_templates(folder: Path) -> None:
    """Create the configured templates folder, with one example, unless it exists."""
    if folder.is_dir():
        print(f"templates: {folder}")
        return
    folder.mkdir(parents=True)
    name, text = EXAMPLE_TEMPLATE
    (folder / name).write_text(text, encoding="utf-8")
    print(f"templates: {folder} (created, with the example {name})")


def _status(settings: Settings, engine: Engine) -> int:
    # First, and without the database: what waits in this host's journal is what an outage
    # has held back.
    _field("journal", _journal_state(Path(settings.tracking.journal_dir)))
    revision = current_revision(engine)
    _field("database", safe_url(settings.database.url))
    _field("schema", f"{revision or 'empty'} (newest {head_revision()})")
    if revision is None:
        print("run `mailbeacon db upgrade` to create the tables")
        return 0
    with engine.connect() as connection:
        for label, table in (("endusers", endusers), ("emails", emails), ("events", events)):
            _field(label, str(connection.scalar(select(func.count()).select_from(table))))
        for label, table in (("campaigns", campaigns), ("jobs", jobs)):
            query = select(table.c.status, func.count()).group_by(table.c.status)
            _field(label, _by_status({status: n for status, n in connection.execute(query)}))
        aside = connection.scalar(select(func.count()).select_from(set_aside_hits)) or 0
        if aside:
            _field(
                "set aside", f"{counted(aside, 'hit')} the loader could not load (set_aside_hits)"
            )
        rules = connection.scalar(select(func.count()).select_from(subscriptions)) or 0
        _field("alerts", counted(rules, "rule"))
        boxes = list_mailboxes(connection)
    tracking = settings.tracking
    _field("tracking", f"{'on' if tracking.enabled else 'off'} at {tracking.base_url}")
    _field("mailboxes", str(len(boxes)))
    for box in boxes:
        owner = f" of {box.owner_email}" if box.owner_email else ""
        default = " (default)" if box.is_default else ""
        _field("mailbox", f"{box.provider} {box.address}{owner}{default}")
    return 0


def _journal_state(folder: Path) -> str:
    from tracking.loader import backlog

    waiting = backlog(folder)
    if not waiting.hits:
        return f"{folder}: nothing waiting"
    oldest = f", the oldest from {waiting.oldest:%Y-%m-%d %H:%M:%S} UTC" if waiting.oldest else ""
    line = f"{folder}: {counted(waiting.hits, 'hit')} waiting in {counted(waiting.files, 'file')}"
    error = f" (the loader: {waiting.error})" if waiting.error else ""
    return f"{line}{oldest}{error}"


def _field(label: str, value: str) -> None:
    print(f"{label + ':':10} {value}")


def _by_status(counts: dict[str, int]) -> str:
    """`3 (2 sent, 1 draft)`, most first; `0` alone."""
    total = sum(counts.values())
    if not total:
        return "0"
    parts = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return f"{total} ({', '.join(f'{n} {status}' for status, n in parts)})"


if __name__ == "__main__":
    sys.exit(main())

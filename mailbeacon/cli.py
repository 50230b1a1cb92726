"""The `mailbeacon` command (DESIGN §8)."""

from __future__ import annotations

import argparse
import asyncio
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
from store.schema import emails, endusers, events


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailbeacon", description="Tracked emails from your own mailbox, driven from Slack."
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="config file (default: $MAILBEACON_CONFIG, else ./config.yaml if present)",
    )
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

    commands.add_parser("demo", help="the whole loop offline in a temporary folder")

    desktop = commands.add_parser("desktop", help="show your desktop alerts as notifications")
    desktop.add_argument("link", help="your alerts link (…/alerts?token=…)")
    desktop.add_argument("--exit-after", type=int, metavar="N", help="stop after N alerts")
    commands.add_parser("init", help="create the data folder, keys and database")
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
    from notifier.desktop_client import DesktopLinkError, follow, native_show

    print("mailbeacon: showing your alerts as desktop notifications; Ctrl-C stops", flush=True)
    try:
        shown = asyncio.run(follow(link, native_show(), stop_after=exit_after))
    except DesktopLinkError as exc:
        print(f"mailbeacon: {exc}", file=sys.stderr)
        return 1
    print(f"mailbeacon: {shown} alerts shown", flush=True)
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

        return run_demo()
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
        return 0
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


def _status(settings: Settings, engine: Engine) -> int:
    revision = current_revision(engine)
    print(f"database: {safe_url(settings.database.url)}")
    print(f"schema:   {revision or 'empty'} (newest {head_revision()})")
    if revision is None:
        print("run `mailbeacon db upgrade` to create the tables")
        return 0
    with engine.connect() as connection:
        for label, table in (("endusers", endusers), ("emails", emails), ("events", events)):
            print(f"{label + ':':9} {connection.scalar(select(func.count()).select_from(table))}")
    tracking = settings.tracking
    print(f"tracking: {'on' if tracking.enabled else 'off'} at {tracking.base_url}")
    with engine.connect() as connection:
        for box in list_mailboxes(connection):
            owner = f" of {box.owner_email}" if box.owner_email else ""
            default = " (default)" if box.is_default else ""
            print(f"mailbox:  {box.provider} {box.address}{owner}{default}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Slack app manifest for this server (`mailbeacon slack manifest`): what Slack's "create an
app from a manifest" dialog takes, with this server's URLs and the bot scopes the code uses."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from bot.registry import all_commands
from mailbeacon.settings import Settings

NAME = "mailbeacon"
# Every bot scope the code needs, and what for. Response URLs, views (App Home, modals) and the
# app_home_opened event need none. tests/test_docs.py checks this list against the README.
SCOPES = (
    # the slash command (slack.command)
    "commands",
    # DMs from the app (alerts, digests, how a job ended) and a send-out's progress (chat.update)
    "chat:write",
    # conversations.open: the DM with a user
    "im:write",
    # conversations.history in that DM: an alert retried after a crash is not posted twice
    "im:history",
    # users.info: who typed the command
    "users:read",
    # the email users.info reports (to link the user), and users.lookupByEmail (alerts)
    "users:read.email",
    # the stats chart, uploaded with files_upload_v2
    "files:write",
)
EVENTS = ("app_home_opened",)  # the App Home tab is drawn when a user opens it
# Slack's autocomplete shows the hint under the command: the command words, up to this long.
HINT_CHARACTERS = 140


def events_url(settings: Settings) -> str:
    """Where Slack sends commands, button presses and events over HTTP."""
    return f"{settings.tracking.base_url.rstrip('/')}/slack/events"


def uses_socket_mode(settings: Settings, socket_mode: bool | None = None) -> bool:
    """As asked, else as config says: Socket Mode once an app-level token is set."""
    return bool(settings.slack.app_token) if socket_mode is None else socket_mode


def usage_hint() -> str:
    """The command words, `help` first, as many as fit in one line."""
    words = ["help"]
    for spec in all_commands():
        head = spec.name.split()[0]
        if head not in words:
            words.append(head)
    hint = ""
    for word in words:
        longer = f"{hint} | {word}" if hint else word
        if len(longer) > HINT_CHARACTERS - len(" | …"):
            return f"{hint} | …"
        hint = longer
    return hint


def app_manifest(settings: Settings, socket_mode: bool | None = None) -> dict[str, Any]:
    """The manifest as a dict (JSON). In Socket Mode, Slack reaches the bot through the
    connection the bot opens, so no request URL is given. `socket_mode` overrides config: the
    app-level token that turns it on exists only once the app does."""
    socket = uses_socket_mode(settings, socket_mode)
    url = {} if socket else {"url": events_url(settings)}
    request_url = {} if socket else {"request_url": events_url(settings)}
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": NAME,
            "description": "Templated, tracked emails from your own mailbox, driven from Slack.",
        },
        "features": {
            "app_home": {
                "home_tab_enabled": True,
                "messages_tab_enabled": True,
                "messages_tab_read_only_enabled": False,
            },
            "bot_user": {"display_name": NAME, "always_online": True},
            "slash_commands": [
                {
                    "command": settings.slack.command,
                    **url,
                    "description": "Send tracked emails, see who opened, get alerts",
                    "usage_hint": usage_hint(),
                    "should_escape": False,
                }
            ],
        },
        "oauth_config": {"scopes": {"bot": list(SCOPES)}},
        "settings": {
            "event_subscriptions": {**request_url, "bot_events": list(EVENTS)},
            "interactivity": {"is_enabled": True, **request_url},
            "org_deploy_enabled": False,
            "socket_mode_enabled": socket,
            "token_rotation_enabled": False,
        },
    }


def manifest_warning(settings: Settings, socket_mode: bool | None = None) -> str | None:
    """Why Slack could not reach this server with the manifest's URLs, if it could not: over
    HTTP, Slack posts only to a public HTTPS URL."""
    if uses_socket_mode(settings, socket_mode):
        return None
    url = urlsplit(settings.tracking.base_url)
    if url.scheme == "https" and _public(url.hostname or ""):
        return None
    return (
        f"Slack cannot reach {events_url(settings)}: set tracking.base_url to this server's "
        "public https:// URL, or use Socket Mode (--socket-mode; no public URL needed)"
    )


def _public(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_global
    except ValueError:  # a name: one with a dot, other than a local one
        return "." in host and not host.endswith((".local", ".localhost", ".internal"))

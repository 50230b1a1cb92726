"""What the tracking package needs to know, filled in from config by mailbeacon.settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from tracking.classify import Rules, parse_networks


@dataclass(frozen=True)
class TrackingSettings:
    # Off: no pixel, no rewritten links, and hits on older emails are not recorded.
    enabled: bool = True
    # Public base URL of the tracking endpoints; empty means http://<server.host>:<server.port>.
    base_url: str = ""
    # The first key signs, every key verifies (rotation). Empty: generated into the data folder.
    signing_keys: list[str] = field(default_factory=list)
    # Added to every tracked link's destination unless the link already has that parameter.
    # "{campaign}" and "{template}" are replaced by the email's campaign id and template key.
    utm: dict[str, str] = field(default_factory=dict)
    # Store IPv4 addresses with the last octet zeroed, IPv6 with the last 80 bits zeroed.
    anonymize_ip: bool = False
    # A hit this soon after sending is a machine (security scanners fetch on delivery).
    machine_after_send_seconds: float = 10.0
    # Hits from these networks (CIDR) are the team's own, not the recipient's.
    internal_networks: list[str] = field(default_factory=list)
    # Add one hidden link that only machines follow.
    honeypot: bool = True
    # How often the server reads the mailboxes (connected ones and the embedded Maildir) for
    # replies, auto-replies and bounces, in seconds; 0 turns reply sync off.
    reply_sync_seconds: float = 60.0
    # Where each web process journals its hits before the loader takes them to the database:
    # a local disk of each web host. Empty: <data_dir>/journal.
    journal_dir: str = ""


def tracking_rules(tracking: TrackingSettings) -> Rules:
    return Rules(
        machine_after_send=timedelta(seconds=tracking.machine_after_send_seconds),
        internal_networks=parse_networks(tracking.internal_networks),
    )

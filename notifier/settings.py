"""What the notifier needs to know, filled in from config by mailbeacon.settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NotifierSettings:
    # How often the server turns new events into alerts and sends those that are due, in
    # seconds; 0 turns alerts off. An event waits 10 s first, in case it turns out a machine.
    dispatch_seconds: float = 5.0

"""Is an open or click a person or a machine? Pure rules over one email's recent hits.

Each signal is a small function registered under the reason it reports; the first that fires
names the reason. A new signal is one more `@signal("name")` function.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

HitKind = Literal["open", "click"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

HONEYPOT_IDX = 0
HONEYPOT_WINDOW = timedelta(seconds=10)
BURST_WINDOW = timedelta(seconds=5)
# The widest look-back any signal needs: how far back the recorder loads an email's hits.
WINDOW = max(HONEYPOT_WINDOW, BURST_WINDOW)

APPLE_MPP_USER_AGENT = "Mozilla/5.0"
# Proxies that fetch images only when a person opens the message: not machines.
HUMAN_PROXY_MARKERS = ("googleimageproxy", "yahoomailproxy")
BOT_MARKERS = (
    "bot",
    "spider",
    "crawl",
    "slurp",
    "preview",
    "scanner",
    "headless",
    "phantomjs",
    "python-",
    "python/",
    "curl/",
    "wget/",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww",
    "httpclient",
    "axios/",
    "node-fetch",
    "facebookexternalhit",
    "barracuda",
    "mimecast",
    "proofpoint",
    "symantec",
    "messagelabs",
    "forcepoint",
    "trendmicro",
    "zscaler",
    "sophos",
    "fortinet",
    "ironport",
    "appriver",
    "safelinks",
)


@dataclass(frozen=True)
class Hit:
    kind: HitKind
    at: datetime
    link_idx: int | None = None  # clicks only; HONEYPOT_IDX is the hidden link
    method: str = "GET"
    user_agent: str = ""
    ip: str = ""
    viewer_user_id: int | None = None  # an internal user recognised by their browser cookie
    reason: str | None = None  # already classified as a machine, for stored hits


@dataclass(frozen=True)
class EmailFacts:
    sent_at: datetime | None
    sender_user_id: int | None
    link_count: int  # real links, not counting the honeypot


@dataclass(frozen=True)
class Rules:
    machine_after_send: timedelta = timedelta(seconds=10)
    internal_networks: tuple[Network, ...] = ()


@dataclass(frozen=True)
class Context:
    email: EmailFacts
    window: Sequence[Hit]  # this email's hits close in time, the one being classified included
    rules: Rules


Signal = Callable[[Hit, Context], bool]
SIGNALS: dict[str, Signal] = {}


def signal(reason: str) -> Callable[[Signal], Signal]:
    def register(fn: Signal) -> Signal:
        SIGNALS[reason] = fn
        return fn

    return register


def classify(hit: Hit, context: Context) -> str | None:
    """The machine reason for this hit, or None for a person."""
    if hit.reason is not None:
        return hit.reason
    for reason, fires in SIGNALS.items():
        if fires(hit, context):
            return reason
    return None


def classify_window(hits: Sequence[Hit], email: EmailFacts, rules: Rules) -> list[str | None]:
    """Classify every hit of one email in the light of all the others (later ones included)."""
    context = Context(email=email, window=hits, rules=rules)
    return [classify(hit, context) for hit in hits]


def parse_networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _is_honeypot(hit: Hit) -> bool:
    return hit.kind == "click" and hit.link_idx == HONEYPOT_IDX


@signal("head_request")
def _head_request(hit: Hit, context: Context) -> bool:
    return hit.method == "HEAD"


@signal("honeypot")
def _honeypot(hit: Hit, context: Context) -> bool:
    """The hidden link, or anything from the same address within ±10 s of it."""
    if _is_honeypot(hit):
        return True
    return any(
        _is_honeypot(other) and other.ip == hit.ip and abs(other.at - hit.at) <= HONEYPOT_WINDOW
        for other in context.window
    )


@signal("apple_mpp")
def _apple_mail_privacy_protection(hit: Hit, context: Context) -> bool:
    return hit.user_agent == APPLE_MPP_USER_AGENT


@signal("bot_user_agent")
def _bot_user_agent(hit: Hit, context: Context) -> bool:
    return is_bot_agent(hit.user_agent)


@functools.lru_cache(maxsize=4096)  # a few mail clients and scanners make most of the traffic
def is_bot_agent(user_agent: str) -> bool:
    agent = user_agent.lower()
    if not agent:
        return True
    if any(marker in agent for marker in HUMAN_PROXY_MARKERS):
        return False
    return any(marker in agent for marker in BOT_MARKERS)


@signal("sender")
def _the_sender_themself(hit: Hit, context: Context) -> bool:
    sender = context.email.sender_user_id
    return sender is not None and hit.viewer_user_id == sender


@signal("internal_network")
def _internal_network(hit: Hit, context: Context) -> bool:
    if not context.rules.internal_networks or not hit.ip:
        return False
    try:
        address = ipaddress.ip_address(hit.ip)
    except ValueError:
        return False
    return any(address in network for network in context.rules.internal_networks)


@signal("link_burst")
def _all_links_within_seconds(hit: Hit, context: Context) -> bool:
    """Every link of the email clicked within 5 s, this click among them: a link scanner."""
    wanted = context.email.link_count
    if hit.kind != "click" or not hit.link_idx or wanted < 2:
        return False
    clicks = [h for h in context.window if h.kind == "click" and h.link_idx]
    for start in (h.at for h in clicks if hit.at - BURST_WINDOW <= h.at <= hit.at):
        end = start + BURST_WINDOW
        if len({h.link_idx for h in clicks if start <= h.at <= end}) >= wanted:
            return True
    return False


@signal("soon_after_send")
def _soon_after_sending(hit: Hit, context: Context) -> bool:
    sent_at = context.email.sent_at
    return sent_at is not None and hit.at - sent_at < context.rules.machine_after_send

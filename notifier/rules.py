"""Which alert rules an event sets off (DESIGN §6). Pure.

A rule (a row of `subscriptions`) names the event kind it waits for, what it narrows to
(template, campaign, company, enduser), whose emails it watches (the user's own, or everyone's),
whether machine hits count, and how often it fires for one email: at every event, or only at the
first of its kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ALERT_KINDS = ("open", "click", "reply", "bounce")
SenderScope = Literal["mine", "all"]
Throttle = Literal["every", "first"]


@dataclass(frozen=True)
class Rule:
    id: int
    user_id: int
    event_kind: str
    channel: str
    template_key: str | None = None
    campaign_id: int | None = None
    company_id: int | None = None
    enduser_id: int | None = None
    sender_scope: SenderScope = "mine"
    human_only: bool = True
    throttle: Throttle = "every"


@dataclass(frozen=True)
class EventFacts:
    """An event, and what a rule may ask of the email it belongs to."""

    id: int
    kind: str
    machine: bool
    email_id: int
    sender_user_id: int | None
    template_key: str | None
    campaign_id: int | None
    enduser_id: int | None
    company_id: int | None
    earlier_human: int  # events of this kind on this email before this one, by people
    earlier_all: int  # the same, machines included


def fires(rule: Rule, event: EventFacts) -> bool:
    if event.kind != rule.event_kind or (rule.human_only and event.machine):
        return False
    if rule.sender_scope == "mine" and event.sender_user_id != rule.user_id:
        return False
    narrowed = (
        (rule.template_key, event.template_key),
        (rule.campaign_id, event.campaign_id),
        (rule.company_id, event.company_id),
        (rule.enduser_id, event.enduser_id),
    )
    if any(wanted is not None and wanted != actual for wanted, actual in narrowed):
        return False
    if rule.throttle == "first":
        return not (event.earlier_human if rule.human_only else event.earlier_all)
    return True

"""Which rules an event sets off: a table of rules and events."""

from __future__ import annotations

from dataclasses import replace

import pytest

from notifier.rules import EventFacts, Rule, fires

MARIA, JONAS = 1, 2
OPEN = EventFacts(
    id=10,
    kind="open",
    machine=False,
    email_id=5,
    sender_user_id=MARIA,
    template_key="outage",
    campaign_id=3,
    enduser_id=7,
    company_id=4,
    earlier_human=0,
    earlier_all=0,
)
RULE = Rule(id=1, user_id=MARIA, event_kind="open", channel="email")


@pytest.mark.parametrize(
    ("rule", "event", "expected"),
    [
        (RULE, OPEN, True),
        (RULE, replace(OPEN, kind="click"), False),
        # Machine opens (Apple MPP, scanners) alert nobody, unless the rule asks for them.
        (RULE, replace(OPEN, machine=True), False),
        (replace(RULE, human_only=False), replace(OPEN, machine=True), True),
        # By default a user hears about their own emails only.
        (RULE, replace(OPEN, sender_user_id=JONAS), False),
        (replace(RULE, sender_scope="all"), replace(OPEN, sender_user_id=JONAS), True),
        (RULE, replace(OPEN, sender_user_id=None), False),
        # Narrowed to a template, a campaign, a company or an enduser.
        (replace(RULE, template_key="outage"), OPEN, True),
        (replace(RULE, template_key="webinar"), OPEN, False),
        (replace(RULE, campaign_id=3), OPEN, True),
        (replace(RULE, campaign_id=9), OPEN, False),
        (replace(RULE, company_id=4), OPEN, True),
        (replace(RULE, company_id=8), replace(OPEN, company_id=None), False),
        (replace(RULE, enduser_id=7), OPEN, True),
        (replace(RULE, enduser_id=6), OPEN, False),
        # First open only: a second open of the same email is quiet...
        (replace(RULE, throttle="first"), OPEN, True),
        (replace(RULE, throttle="first"), replace(OPEN, earlier_human=1, earlier_all=1), False),
        # ...but an earlier machine open does not count against a person's first.
        (replace(RULE, throttle="first"), replace(OPEN, earlier_all=2), True),
        (
            replace(RULE, throttle="first", human_only=False),
            replace(OPEN, machine=True, earlier_all=1),
            False,
        ),
    ],
)
def test_fires(rule: Rule, event: EventFacts, expected: bool) -> None:
    assert fires(rule, event) is expected

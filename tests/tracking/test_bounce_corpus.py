"""Bounce recall and false positives of classify_inbound over a corpus shaped as Postfix, Exim,
qmail, Sendmail, Exchange, GroupWise, Yahoo and AOL send bounces, with people's replies and
auto-replies that name addresses (tests/tracking/messages/corpus/*.eml)."""

from __future__ import annotations

import email
import email.policy
from email.policy import Policy
from pathlib import Path

import pytest

from tracking.inbound import Inbound, classify_inbound

CORPUS = Path(__file__).parent / "messages" / "corpus"

# Each bounce with the addresses that failed, as we sent to them.
BOUNCES: dict[str, tuple[str, ...]] = {
    # A DSN: 5.1.1, 5.2.2, and 4.4.7 (the queue gave up on a domain without MX).
    "postfix_bounce.eml": (
        "einkauf@alpen-textil.example",
        "h.berger@alpen-textil.example",
        "info@kaputt-domain.example",
    ),
    "exim_bounce.eml": ("jan.devries@tulp-media.example", "sales@tulp-media.example"),
    "qmail_bounce.eml": ("amministrazione@studio-rossi.example", "m.rossi@studio-rossi.example"),
    # One block says "Action: failure" with a bare "Status: 553".
    "sendmail_bounce.eml": ("bauleitung@unibau.example", "t.mueller@unibau.example"),
    "exchange_legacy_ndr.eml": ("peter.gibbons@initech.example", "samir@initech.example"),
    "groupwise_bounce.eml": (
        "k.hansen@stadtwerke-nord.example",
        "vertrieb@stadtwerke-nord.example",
    ),
    "yahoo_bounce.eml": ("lucia.fernandez@yahoo.example", "pablo.ruiz@yahoo.example"),
    "aol_bounce.eml": ("gregfromsales@aol.example",),
    "aol_legacy_bounce.eml": ("bettyboop72@aol.example", "j.walker.ny@aol.example"),
    # No daemon sender, no bounce subject, and Precedence: bulk.
    "gateway_bulk_bounce.eml": ("olga.ivanova@brightline.example",),
}
# Messages that name addresses, even in a bounce's words, and are no bounce.
NOT_BOUNCES: dict[str, str] = {
    "reply_naming_colleagues.eml": "reply",
    "reply_quoting_a_bounce.eml": "reply",
    "new_thread_contact_list.eml": "unrelated",
    "vacation_autoreply.eml": "auto_reply",
    "outlook_automatic_reply.eml": "auto_reply",
    "helpdesk_ack_bulk.eml": "auto_reply",
    "postfix_delayed_dsn.eml": "unrelated",  # still being retried
}


def classify(name: str, policy: Policy) -> Inbound:
    message = email.message_from_bytes((CORPUS / name).read_bytes(), policy=policy)
    return classify_inbound(message, internal_domains=("northwind.example",), internal_addresses=())


@pytest.fixture(params=[email.policy.compat32, email.policy.default], ids=["compat32", "default"])
def policy(request: pytest.FixtureRequest) -> Policy:
    return request.param  # type: ignore[no-any-return]


def test_every_corpus_message_is_scored() -> None:
    assert {p.name for p in CORPUS.glob("*.eml")} == set(BOUNCES) | set(NOT_BOUNCES)
    assert len(BOUNCES) >= 8
    assert len(NOT_BOUNCES) >= 6


def test_recall_is_complete_and_there_are_no_false_positives(policy: Policy) -> None:
    expected = {(name, a) for name, addresses in BOUNCES.items() for a in addresses}
    found = {
        (name, a)
        for name in BOUNCES
        if (inbound := classify(name, policy)).kind == "bounce"
        for a in inbound.failed_recipients
    }
    recall = len(expected & found) / len(expected)
    wrong_addresses = found - expected
    wrong_bounces = {n for n in NOT_BOUNCES if classify(n, policy).kind == "bounce"}
    assert (recall, wrong_addresses, wrong_bounces) == (1.0, set(), set()), expected - found


@pytest.mark.parametrize(("name", "kind"), NOT_BOUNCES.items())
def test_what_is_no_bounce_is_what_it_is(name: str, kind: str, policy: Policy) -> None:
    assert classify(name, policy).kind == kind

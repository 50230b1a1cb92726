"""classify_inbound and credited_email on messages shaped as Gmail, Outlook/Exchange, Postfix,
Exim, Yahoo, HCL Notes and Google Groups send them (tests/tracking/messages/*.eml)."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from email.message import Message
from email.policy import Policy
from pathlib import Path

import pytest

from tracking.inbound import (
    Inbound,
    answered_ids,
    classify_inbound,
    credited_email,
    message_ids,
    snippet,
)

MESSAGES = Path(__file__).parent / "messages"
INTERNAL_DOMAINS = ("northwind.example",)
INTERNAL_ADDRESSES = ("Tom.Becker@partner-agency.example",)  # a contractor among our users

# Our emails as the emails table stores them: Message-ID -> email id.
EMAIL_1 = "<176215320045.3187.8823417710292648102@northwind.example>"  # to Anna
EMAIL_2 = "<176216836012.4021.1130561237790912453@northwind.example>"  # to Anna, same thread
EMAIL_11 = "<176216836555.4021.1029384756102938475@northwind.example>"  # to María
EMAIL_12 = "<176216836612.4021.5647382910564738291@northwind.example>"  # to María, same thread
OURS = {
    EMAIL_1: 1,
    EMAIL_2: 2,
    "<176216836107.4021.5518290064127734931@northwind.example>": 3,  # Jonas
    "<176216836188.4021.7709915526310982245@northwind.example>": 4,  # support@initech
    "<176216836251.4021.2934475510348861027@northwind.example>": 5,  # Klaus
    "<176216836340.4021.6620018842273905511@northwind.example>": 6,  # no.such.person
    "<176216844077.4021.3390128846120657710@northwind.example>": 7,  # Raj
    "<176216836402.4021.4478120965531907312@northwind.example>": 8,  # Lena
    "<176216836477.4021.8854120093365531190@northwind.example>": 9,  # ops@slow-mx
    "<176216838430.4021.2217680943315528871@northwind.example>": 10,  # Pierre
    EMAIL_11: 11,
    EMAIL_12: 12,
}
ANNA = "Anna Schmidt <anna.schmidt@gmail.com>"


def load(name: str, policy: Policy = email.policy.compat32) -> Message:
    return email.message_from_bytes((MESSAGES / name).read_bytes(), policy=policy)


def classify(message: Message) -> Inbound:
    return classify_inbound(
        message, internal_domains=INTERNAL_DOMAINS, internal_addresses=INTERNAL_ADDRESSES
    )


def reply(
    *extra: str,
    subject: str = "Re: Your Q4 renewal",
    sender: str = ANNA,
    answering: bool = True,
    body: str = "Sounds good, let's talk on Monday.\n",
) -> Message:
    """A plain reply from Gmail to EMAIL_2, with `extra` headers."""
    headers = [
        "MIME-Version: 1.0",
        *([f"References: {EMAIL_1}\n {EMAIL_2}", f"In-Reply-To: {EMAIL_2}"] if answering else []),
        f"From: {sender}",
        "Date: Tue, 4 Nov 2025 08:41:17 +0100",
        "Message-ID: <CAJx7pQ=Kd8mT4vP0yR3uG7jN2oX5eB8hL1aF4cS9wZ3qM6@mail.gmail.com>",
        f"Subject: {subject}",
        "To: Sofia Lind <sofia.lind@northwind.example>",
        'Content-Type: text/plain; charset="UTF-8"',
        *extra,
    ]
    return email.message_from_string("\n".join(headers) + "\n\n" + body)


def report(*blocks: str, subject: str = "Undelivered Mail Returned to Sender") -> Message:
    """A Postfix report with these per-recipient field blocks, returning our email 7."""
    fields = "\n\n".join(blocks)
    return email.message_from_string(f"""\
From: MAILER-DAEMON@mx.northwind.example (Mail Delivery System)
Subject: {subject}
To: sofia.lind@northwind.example
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="4d0TqM5c8Yz1xnT.1762161243/mx.northwind.example"
Message-Id: <20251103091403.4d0TqM5c8Yz1xnT@mx.northwind.example>

--4d0TqM5c8Yz1xnT.1762161243/mx.northwind.example
Content-Description: Notification
Content-Type: text/plain; charset=utf-8

This is the mail system at host mx.northwind.example.

--4d0TqM5c8Yz1xnT.1762161243/mx.northwind.example
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.northwind.example
Arrival-Date: Mon,  3 Nov 2025 10:14:01 +0100 (CET)

{fields}

--4d0TqM5c8Yz1xnT.1762161243/mx.northwind.example
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: Sofia Lind <sofia.lind@northwind.example>
Subject: Your Q4 renewal
Message-ID: <176216844077.4021.3390128846120657710@northwind.example>

--4d0TqM5c8Yz1xnT.1762161243/mx.northwind.example--
""")


@pytest.fixture(params=[email.policy.compat32, email.policy.default], ids=["compat32", "default"])
def policy(request: pytest.FixtureRequest) -> Policy:
    return request.param  # type: ignore[no-any-return]


# --- Real-world messages ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "reason", "sender", "failed", "credited"),
    [
        # Auto-replies.
        (
            "gmail_vacation.eml",
            "auto_reply",
            "Auto-Submitted: auto-replied",
            "anna.schmidt@gmail.com",
            (),
            2,
        ),
        (
            "outlook_oof.eml",
            "auto_reply",
            "Auto-Submitted: auto-generated",
            "jonas.berg@contoso.example",
            (),
            3,
        ),
        (
            "list_autoresponder.eml",
            "auto_reply",
            "Precedence: list",
            "support@initech.example",
            (),
            4,
        ),
        (
            "german_oof.eml",
            "auto_reply",
            "Subject: abwesenheitsnotiz",
            "klaus.weber@bergmann-logistik.example",
            (),
            5,
        ),
        # Bounces: credited through the returned original's Message-ID.
        (
            "gmail_dsn.eml",
            "bounce",
            "DSN Action: failed 5.1.1",
            "mailer-daemon@googlemail.com",
            ("no.such.person@initech.example",),
            6,
        ),
        # From our own MTA, in an internal domain: a bounce all the same.
        (
            "postfix_dsn.eml",
            "bounce",
            "DSN Action: failed 5.1.1",
            "mailer-daemon@mx.northwind.example",
            ("raj.patel@initech.example",),
            7,
        ),
        (
            "exchange_ndr.eml",
            "bounce",
            "DSN Action: failed 5.1.10",
            "microsoftexchange329e71ec88ae4615bbc36ab6ce41109e@contoso.example",
            ("lena.vogel@contoso.example",),
            8,
        ),
        # No DSN part: flufl.bounce reads X-Failed-Recipients; the original is quoted inline.
        (
            "exim_bounce.eml",
            "bounce",
            "X-Failed-Recipients: p.dubois@cabinet-dubois.example",
            "mailer-daemon@mx.hostingco.example",
            ("p.dubois@cabinet-dubois.example",),
            10,
        ),
        # Still being retried: no bounce. It names our email, but `unrelated` records nothing.
        (
            "gmail_delayed_dsn.eml",
            "unrelated",
            "DSN Action: delayed 4.4.7",
            "mailer-daemon@googlemail.com",
            (),
            9,
        ),
        # Replies. Email 1, then email 2 in the same thread: the answer to email 2 is email 2's.
        ("gmail_reply.eml", "reply", "In-Reply-To", "anna.schmidt@gmail.com", (), 2),
        ("outlook_reply.eml", "reply", "In-Reply-To", "jonas.berg@contoso.example", (), 3),
        # References only, ours in the middle and at the end: the newest of ours.
        ("yahoo_reply.eml", "reply", "References", "maria.gonzalez@yahoo.com", (), 12),
        (
            "internal_reply.eml",
            "internal",
            "internal domain northwind.example",
            "marta.ruiz@northwind.example",
            (),
            3,
        ),
        (
            "new_thread.eml",
            "unrelated",
            "no In-Reply-To or References",
            "anna.schmidt@gmail.com",
            (),
            None,
        ),
    ],
)
def test_real_world_messages(
    name: str,
    kind: str,
    reason: str,
    sender: str,
    failed: tuple[str, ...],
    credited: int | None,
    policy: Policy,
) -> None:
    inbound = classify(load(name, policy))
    assert (inbound.kind, inbound.reason, inbound.sender) == (kind, reason, sender)
    assert inbound.failed_recipients == failed
    assert credited_email(inbound, OURS) == credited


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # Quoted lines and the "On … wrote:" line Gmail wrapped onto two lines are left out.
        (
            "gmail_reply.eml",
            "Hi Sofia, the 3-year plan at 12.400 € per year works for us. Can we start on "
            "1 December? Anna",
        ),
        # base64; Outlook's quote has no '>' but starts with its From:/Sent: block.
        (
            "outlook_reply.eml",
            "Hi Sofia, Thanks for the proposal \u2013 we'd like to go ahead with the 3-year plan. "
            "Could you send the order form to our procurement team "
            "(procurement@contoso.example)? Best regards, Jonas Jonas Berg | H…",
        ),
        # quoted-printable, "-----Original Message-----".
        (
            "internal_reply.eml",
            "Hi Jonas, I'm in procurement at Northwind and will send you the order form this "
            "afternoon. Marta",
        ),
        # HTML only (quoted-printable, entities); Yahoo quotes in <div>s after the attribution.
        ("yahoo_reply.eml", "Hola Sofia, sí, por favor envíame el contrato & la factura. María"),
        # base64, no quote at all.
        (
            "new_thread.eml",
            "Hi Sofia, please send future invoices to ap-invoices@initech.example. Thanks, Anna",
        ),
        # ISO-8859-1 quoted-printable.
        (
            "german_oof.eml",
            "Ich bin bis einschließlich 7. November nicht im Büro. In dringenden Fällen wenden "
            "Sie sich bitte an disposition@bergmann-logistik.example. Mit freundlichen Grüßen "
            "Klaus Weber",
        ),
        ("gmail_dsn.eml", ""),  # reports carry no one's words
    ],
)
def test_snippet_of_real_world_messages(name: str, expected: str, policy: Policy) -> None:
    assert classify(load(name, policy)).snippet == expected


@pytest.mark.parametrize(
    ("name", "subject"),
    [
        ("gmail_reply.eml", "Re: Your Q4 renewal \u2013 next steps"),  # UTF-8 Q
        ("german_oof.eml", "Abwesenheitsnotiz: Ihre Verlängerung für Q4"),  # ISO-8859-1 Q
        ("yahoo_reply.eml", "Re: Tu renovación del cuarto trimestre"),  # UTF-8 B
        ("postfix_dsn.eml", "Undelivered Mail Returned to Sender"),
    ],
)
def test_subjects_are_decoded(name: str, subject: str, policy: Policy) -> None:
    assert classify(load(name, policy)).subject == subject


@pytest.mark.parametrize(
    ("name", "message_id", "in_reply_to", "references"),
    [
        (
            "gmail_reply.eml",
            "<CAJx7pQ=Yb4kR2tN8wP1sE5hL0mV3cZ6fG9jD2aQ7uX1oI4@mail.gmail.com>",
            EMAIL_2,
            (EMAIL_1, EMAIL_2),
        ),
        # A bounce's In-Reply-To is the returned original's Message-ID: from the attached
        # message, from text/rfc822-headers, or from the copy quoted in the text.
        (
            "postfix_dsn.eml",
            "<20251103091403.4d0TqM5c8Yz1xnT@mx.northwind.example>",
            "<176216844077.4021.3390128846120657710@northwind.example>",
            (),
        ),
        (
            "exchange_ndr.eml",
            "<e8a1d4b2-6c3f-4a7e-b915-0d2c8f6e4a17@DB8PR07MB6203.eurprd07.prod.outlook.com>",
            "<176216836402.4021.4478120965531907312@northwind.example>",
            (),
        ),
        (
            "exim_bounce.eml",
            "<E1vFq2b-0004Kx-2Q@mx.hostingco.example>",
            "<176216838430.4021.2217680943315528871@northwind.example>",
            (),
        ),
    ],
)
def test_message_ids(
    name: str,
    message_id: str,
    in_reply_to: str,
    references: tuple[str, ...],
    policy: Policy,
) -> None:
    inbound = classify(load(name, policy))
    assert (inbound.message_id, inbound.in_reply_to, inbound.references) == (
        message_id,
        in_reply_to,
        references,
    )


# --- Auto-reply signals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "subject", "kind", "reason"),
    [
        ((), "Re: Your Q4 renewal", "reply", "In-Reply-To"),
        (("Auto-Submitted: auto-replied",), "Re: Your Q4 renewal", "auto_reply", None),
        (
            ('Auto-Submitted: auto-generated; owner-email="it@initech.example"',),
            "Re: Your Q4 renewal",
            "auto_reply",
            "Auto-Submitted: auto-generated",
        ),
        (("Auto-Submitted: no",), "Re: Your Q4 renewal", "reply", None),
        (("X-Autoreply: yes",), "Re: Your Q4 renewal", "auto_reply", "X-Autoreply: yes"),
        (("X-Autorespond: Vacation",), "Re: Your Q4 renewal", "auto_reply", None),
        (("Precedence: bulk",), "Re: Your Q4 renewal", "auto_reply", "Precedence: bulk"),
        (("Precedence: junk",), "Re: Your Q4 renewal", "auto_reply", None),
        (("Precedence: auto_reply",), "Re: Your Q4 renewal", "auto_reply", None),
        (("Precedence: first-class",), "Re: Your Q4 renewal", "reply", None),
        (
            ("List-Id: Initech Support <support.initech.example>",),
            "Re: Your Q4 renewal",
            "auto_reply",
            "List-Id on an answer",
        ),
        (
            ("List-Unsubscribe: <mailto:support+unsubscribe@initech.example>",),
            "Re: Your Q4 renewal",
            "auto_reply",
            None,
        ),
        # Either Exchange header alone is on messages people write too; both: a rule answered.
        (("X-Auto-Response-Suppress: All",), "Re: Your Q4 renewal", "reply", None),
        (
            ("X-MS-Exchange-Inbox-Rules-Loop: anna.schmidt@gmail.com",),
            "Re: Your Q4 renewal",
            "reply",
            None,
        ),
        (
            (
                "X-Auto-Response-Suppress: All",
                "X-MS-Exchange-Inbox-Rules-Loop: anna.schmidt@gmail.com",
            ),
            "Re: Your Q4 renewal",
            "auto_reply",
            "X-Auto-Response-Suppress with X-MS-Exchange-Inbox-Rules-Loop",
        ),
        (("X-MS-Has-Attach: yes",), "Re: Your Q4 renewal", "reply", None),
        # Subjects.
        ((), "Automatic reply: Your Q4 renewal", "auto_reply", "Subject: automatic reply:"),
        ((), "AUTO: Your Q4 renewal", "auto_reply", "Subject: auto:"),
        ((), "Out of Office: Your Q4 renewal", "auto_reply", "Subject: out of office"),
        ((), "Autoreply: Your Q4 renewal", "auto_reply", None),
        ((), "Auto-Reply: Your Q4 renewal", "auto_reply", None),
        ((), "Automatische Antwort: Ihre Verlängerung", "auto_reply", None),
        # Outlook in French puts a no-break space before the colon.
        (
            (),
            "=?iso-8859-1?Q?R=E9ponse_automatique=A0:_Your_Q4_renewal?=",
            "auto_reply",
            "Subject: réponse automatique",
        ),
        ((), "=?utf-8?Q?Respuesta_autom=C3=A1tica:_Your_Q4_renewal?=", "auto_reply", None),
        ((), "Risposta automatica: Your Q4 renewal", "auto_reply", None),
        ((), "Automatisch antwoord: Your Q4 renewal", "auto_reply", None),
        ((), "[EXTERNAL] Automatic reply: Your Q4 renewal", "auto_reply", None),
        # A person writing about an absence is not an auto-reply.
        ((), "Re: Out of office next week?", "reply", None),
    ],
)
def test_auto_reply_signals(
    headers: tuple[str, ...], subject: str, kind: str, reason: str | None
) -> None:
    inbound = classify(reply(*headers, subject=subject))
    assert inbound.kind == kind
    if reason is not None:
        assert inbound.reason == reason


def test_list_headers_on_a_message_answering_nothing_are_no_auto_reply() -> None:
    newsletter = reply("List-Id: <news.initech.example>", subject="November news", answering=False)
    assert classify(newsletter).kind == "unrelated"


def test_an_auto_reply_is_one_before_it_is_internal() -> None:
    colleague = reply("Auto-Submitted: auto-replied", sender="Marta <marta.ruiz@northwind.example>")
    assert classify(colleague).kind == "auto_reply"


# --- Internal --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "kind", "reason"),
    [
        (
            "Marta Ruiz <Marta.Ruiz@northwind.example>",
            "internal",
            "internal domain northwind.example",
        ),
        ("Ops <ops@eu.northwind.example>", "internal", "internal domain northwind.example"),
        ("Tom Becker <tom.becker@partner-agency.example>", "internal", None),
        ("Eve <eve@notnorthwind.example>", "reply", "In-Reply-To"),
        ("Eve <eve@partner-agency.example>", "reply", "In-Reply-To"),
    ],
)
def test_internal_senders(sender: str, kind: str, reason: str | None) -> None:
    inbound = classify(reply(sender=sender))
    assert inbound.kind == kind
    if reason is not None:
        assert inbound.reason == reason


def test_a_colleague_is_internal_whatever_the_message_answers() -> None:
    fresh = reply(sender="Marta Ruiz <marta.ruiz@northwind.example>", answering=False)
    assert classify(fresh).kind == "internal"


# --- Bounces ---------------------------------------------------------------------------------

FAILED = """\
Final-Recipient: rfc822; raj.patel@initech.example
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <raj.patel@initech.example>: User unknown"""
DELAYED = """\
Final-Recipient: rfc822; ops@slow-mx.example
Action: delayed
Status: 4.4.1
Will-Retry-Until: Wed,  5 Nov 2025 10:14:01 +0100 (CET)"""


@pytest.mark.parametrize(
    ("blocks", "kind", "reason", "failed"),
    [
        ((FAILED,), "bounce", "DSN Action: failed 5.1.1", ("raj.patel@initech.example",)),
        # Only the permanent failures are the bounce's.
        ((DELAYED, FAILED), "bounce", "DSN Action: failed 5.1.1", ("raj.patel@initech.example",)),
        ((DELAYED,), "unrelated", "DSN Action: delayed 4.4.1", ()),
        # The queue gave up: a 4.x.x status, but the message will never be delivered.
        (
            ("Final-Recipient: rfc822; ops@slow-mx.example\nAction: failed\nStatus: 4.4.7",),
            "bounce",
            "DSN Action: failed 4.4.7",
            ("ops@slow-mx.example",),
        ),
        # Older MTAs: "failure" and a bare SMTP reply code.
        (
            ("Final-Recipient: rfc822; ops@slow-mx.example\nAction: failure\nStatus: 553",),
            "bounce",
            "DSN Action: failure 553",
            ("ops@slow-mx.example",),
        ),
        (
            ("Final-Recipient: rfc822; ops@slow-mx.example\nStatus: 553 mailbox name not allowed",),
            "bounce",
            "DSN Action: none 553",
            ("ops@slow-mx.example",),
        ),
        # A 5.x.x status on a message still being tried is no failure yet.
        (
            ("Final-Recipient: rfc822; ops@slow-mx.example\nAction: delayed\nStatus: 5.4.7",),
            "unrelated",
            "DSN Action: delayed 5.4.7",
            (),
        ),
        # A 5.x.x status without an Action (flufl.bounce would skip it).
        (
            ("Final-Recipient: rfc822; Raj.Patel@initech.example\nStatus: 5.2.2 (mailbox full)",),
            "bounce",
            "DSN Action: none 5.2.2",
            ("raj.patel@initech.example",),
        ),
        # No Status: the Action decides.
        (
            ("Final-Recipient: rfc822; raj.patel@initech.example\nAction: failed",),
            "bounce",
            "DSN Action: failed",
            ("raj.patel@initech.example",),
        ),
        # The address we sent to, not the one it was forwarded to.
        (
            (
                "Original-Recipient: rfc822; raj@initech.example\n"
                "Final-Recipient: rfc822; raj.patel@mail.initech.example\n"
                "Action: failed\nStatus: 5.1.1",
            ),
            "bounce",
            "DSN Action: failed 5.1.1",
            ("raj@initech.example",),
        ),
        # Exchange's "Delivered:" receipt.
        (
            (
                "Final-Recipient: rfc822; raj.patel@initech.example\n"
                "Action: delivered\nStatus: 2.0.0",
            ),
            "unrelated",
            "DSN Action: delivered 2.0.0",
            (),
        ),
    ],
)
def test_delivery_status_fields(
    blocks: tuple[str, ...], kind: str, reason: str, failed: tuple[str, ...]
) -> None:
    inbound = classify(report(*blocks))
    assert (inbound.kind, inbound.reason, inbound.failed_recipients) == (kind, reason, failed)
    assert inbound.in_reply_to == "<176216844077.4021.3390128846120657710@northwind.example>"


def test_a_failure_report_no_detector_can_read_is_a_bounce_without_recipients() -> None:
    message = reply(
        "X-MS-Exchange-Message-Is-Ndr:",
        subject="Undeliverable: Your Q4 renewal",
        sender="Microsoft Outlook <postmaster@contoso.example>",
        body="Delivery has failed to these recipients or groups.\n",
    )
    inbound = classify(message)
    assert (inbound.kind, inbound.reason) == ("bounce", "X-MS-Exchange-Message-Is-Ndr")
    assert (inbound.failed_recipients, inbound.snippet) == ((), "")


def test_a_delay_warning_without_delivery_status_is_no_bounce() -> None:
    message = reply(
        subject="Warning: message 1vFq2b-0004Kx-2Q delayed 24 hours",
        sender="Mail Delivery System <Mailer-Daemon@mx.hostingco.example>",
        body="This message was created automatically by mail delivery software.\n\n"
        "A message that you sent has not yet been delivered to one or more of its\n"
        "recipients after more than 24 hours on the queue on mx.hostingco.example.\n",
    )
    inbound = classify(message)
    assert inbound.kind == "unrelated"
    assert inbound.reason.endswith("(delivery delayed)")


def test_a_read_receipt_is_no_reply() -> None:
    message = email.message_from_string(f"""\
From: Jonas Berg <jonas.berg@contoso.example>
To: Sofia Lind <sofia.lind@northwind.example>
Subject: Read: Your Q4 renewal
In-Reply-To: {EMAIL_2}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification; boundary="mdn"

--mdn
Content-Type: text/plain; charset="us-ascii"

Your message was read on Monday, November 3, 2025 10:20:11 AM (UTC+01:00).

--mdn
Content-Type: message/disposition-notification

Reporting-UA: AM9PR07MB7218.eurprd07.prod.outlook.com; Microsoft Exchange Server
Final-Recipient: rfc822;jonas.berg@contoso.example
Original-Message-ID: {EMAIL_2}
Disposition: automatic-action/MDN-sent-automatically; displayed

--mdn--
""")
    inbound = classify(message)
    assert (inbound.kind, inbound.in_reply_to) == ("unrelated", EMAIL_2)


def test_addresses_in_a_persons_text_are_no_bounce() -> None:
    # Asked about any message, flufl.bounce's LLNL heuristic reads this as a bounce.
    message = reply(body="Thanks! I asked our CFO, maria.lopez@initech.example, to sign today.\n")
    assert classify(message).kind == "reply"


SIMPLE_FAILURE = """\
Delivery to the following recipient failed permanently:

     raj.patel@initech.example

Technical details of permanent failure:
550 5.1.1 The email account that you tried to reach does not exist.

----- Original message -----

Subject: Your Q4 renewal
"""
EXCHANGE_FAILURE = """\
Your message

  To:      Raj Patel
  Subject: Your Q4 renewal
  Sent:    Mon, 3 Nov 2025 10:14:01 +0100

did not reach the following recipient(s):

raj.patel@initech.example on Mon, 3 Nov 2025 10:14:05 +0100
    The recipient name is not recognized
    The MTS-ID of the original message is: c=DE;a= ;p=Initech;l=MAIL010251103091405
    MSEXCH:IMS:Initech:EU:MAIL01 0 (000C05A6) Unknown Recipient
"""


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (SIMPLE_FAILURE, "delivery failure wording (simple)"),
        (EXCHANGE_FAILURE, "delivery failure wording (Exchange)"),
    ],
)
def test_a_failure_report_no_signal_marks_is_read_by_its_wording(body: str, reason: str) -> None:
    # No daemon sender, no bounce subject, and Precedence: bulk, which alone is an auto-reply.
    message = reply(
        "Precedence: bulk",
        subject="Message could not be delivered",
        sender="Mail Gateway <mailgw@relay.initech.example>",
        answering=False,
        body=body,
    )
    inbound = classify(message)
    assert (inbound.kind, inbound.reason) == ("bounce", reason)
    assert inbound.failed_recipients == ("raj.patel@initech.example",)


@pytest.mark.parametrize("body", [SIMPLE_FAILURE, EXCHANGE_FAILURE])
def test_a_person_quoting_a_failure_report_is_no_bounce(body: str) -> None:
    text = "Raj left us in October, please write to me instead.\n\n" + body
    assert classify(reply(body=text)).kind == "reply"


def test_a_yahoo_shaped_failure_from_any_daemon_lists_its_addresses() -> None:
    message = reply(
        subject="Failure Notice",
        sender="MAILER-DAEMON@mta1042.mail.aol.example",
        answering=False,
        body="Sorry, we were unable to deliver your message to the following address.\n\n"
        "<raj.patel@initech.example>:\n"
        "554: delivery error: dd This user doesn't have an account - mta1042.mail\n\n"
        "--- Below this line is a copy of the message.\n\n"
        "To: <someone.else@initech.example>\n",
    )
    inbound = classify(message)
    assert (inbound.kind, inbound.failed_recipients) == ("bounce", ("raj.patel@initech.example",))


# --- Crediting -------------------------------------------------------------------------------


def inbound(in_reply_to: str | None, *references: str) -> Inbound:
    return Inbound("reply", "anna.schmidt@gmail.com", "Re: x", "", None, in_reply_to, references)


THEIRS = "<CAJx7pQ=Yb4kR2tN8wP1sE5hL0mV3cZ6fG9jD2aQ7uX1oI4@mail.gmail.com>"


@pytest.mark.parametrize(
    ("answering", "credited"),
    [
        (inbound(EMAIL_2, EMAIL_1, EMAIL_2), 2),
        # In-Reply-To wins over a newer email of ours in References: each email is its own record.
        (inbound(EMAIL_1, EMAIL_1, EMAIL_2), 1),
        (inbound(THEIRS, EMAIL_1, EMAIL_2, THEIRS), 2),
        (inbound(None, THEIRS, EMAIL_11, THEIRS, EMAIL_12), 12),
        (inbound(None, EMAIL_1, EMAIL_2, THEIRS), 2),
        (inbound(None, EMAIL_1, THEIRS), 1),
        (inbound(THEIRS, THEIRS), None),
        (inbound(None), None),
        # Whitespace and missing brackets do not hide ours.
        (inbound(" 176216836012.4021.1130561237790912453@northwind.example "), 2),
        # Compared exactly: no case folding.
        (inbound(EMAIL_2.upper()), None),
    ],
)
def test_credited_email(answering: Inbound, credited: int | None) -> None:
    assert credited_email(answering, OURS) == credited


def test_a_reply_to_none_of_ours_is_credited_to_none() -> None:
    answer = classify(load("gmail_reply.eml"))
    assert answer.kind == "reply"
    assert credited_email(answer, {"<1.2.3@northwind.example>": 1}) is None


def test_answered_ids_are_in_the_order_they_are_credited() -> None:
    assert answered_ids(inbound(EMAIL_2, EMAIL_1, THEIRS, EMAIL_2)) == (EMAIL_2, THEIRS, EMAIL_1)


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        ("<a@x.example>", ("<a@x.example>",)),
        (
            "<a@x.example>\n <b@y.example>\t<c@z.example>",
            ("<a@x.example>", "<b@y.example>", "<c@z.example>"),
        ),
        ("<a@x.example>,<b@y.example>", ("<a@x.example>", "<b@y.example>")),
        ("<a@x.example> (Anna's message of Mon, 3 Nov 2025)", ("<a@x.example>",)),
        ("a@x.example b@y.example", ("<a@x.example>", "<b@y.example>")),
        ("Your message of Monday", ()),
        ("<>", ()),
        ("", ()),
    ],
)
def test_message_ids_in_a_header(value: str, ids: tuple[str, ...]) -> None:
    assert message_ids(value) == ids


# --- Snippets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Yes, Monday works.\n\nOn Mon, Nov 3, 2025 at 10:12 AM Sofia wrote:\n> Monday?\n",
            "Yes, Monday works.",
        ),
        # Bottom-posting: the answer is below the quote.
        (
            "On Mon, Nov 3, 2025 at 10:12 AM Sofia wrote:\n> Monday?\n\nYes, Monday works.\n",
            "Yes, Monday works.",
        ),
        # Inline answers keep their own lines.
        ("> Monday?\nYes.\n> Which room?\nThe big one.\n", "Yes. The big one."),
        (
            "Passt.\n\nAm Mo., 3. Nov. 2025 um 10:12 Uhr schrieb Sofia Lind <\n"
            "sofia.lind@northwind.example>:\n\n> Montag?\n",
            "Passt.",
        ),
        (
            "Parfait.\n\nLe lun. 3 nov. 2025 à 10:12, Sofia Lind <sofia@x.example> a écrit :\n",
            "Parfait.",
        ),
        ("Klingt gut.\n\n-----Ursprüngliche Nachricht-----\nVon: Sofia\n", "Klingt gut."),
        # "On …" without "wrote:" is the writer's own sentence.
        (
            "On Monday I will call you.\nSofia wrote the offer.\n",
            "On Monday I will call you. Sofia wrote the offer.",
        ),
        ("word " * 100, ("word " * 40)[:199].rstrip() + "…"),
        ("", ""),
    ],
)
def test_snippet(text: str, expected: str) -> None:
    assert snippet(text) == expected


def test_html_without_text_part_is_read_as_text() -> None:
    message = reply(
        "Content-Transfer-Encoding: quoted-printable",
        body="<html><head><title>x</title><style>p{color:red}</style></head><body>"
        "<p>Yes,&nbsp;please.</p><script>track()</script><p>Anna</p>"
        '<blockquote type=3D"cite">Shall I send it?</blockquote></body></html>\n',
    )
    message.replace_header("Content-Type", 'text/html; charset="UTF-8"')
    assert classify(message).snippet == "Yes, please. Anna"


def test_an_unknown_charset_is_read_as_utf8() -> None:
    message = reply(body="Gr\u00fc\u00dfe\n")
    message.set_param("charset", "x-unknown-charset")
    message.set_payload("Grüße\n".encode())
    assert classify(message).snippet == "Grüße"


@pytest.mark.parametrize(
    "from_",
    [
        "Jörg Maier <Joerg.Maier@initech.example>",  # raw UTF-8, as many senders write it
        "=?utf-8?q?J=C3=B6rg_Maier_=3CJoerg=2EMaier=40initech=2Eexample=3E?=",  # all encoded
    ],
)
def test_unencoded_and_overencoded_headers_are_read(from_: str, policy: Policy) -> None:
    raw = f"From: {from_}\nSubject: Re: Grüße\nIn-Reply-To: {EMAIL_2}\n\nDanke!\n"
    inbound = classify(email.message_from_bytes(raw.encode(), policy=policy))
    assert (inbound.sender, inbound.subject) == ("joerg.maier@initech.example", "Re: Grüße")


def test_a_subject_in_an_unknown_charset_is_read_as_utf8() -> None:
    message = reply(subject="=?x-no-such-charset?q?Re=3A_Gr=C3=BC=C3=9Fe?=")
    assert classify(message).subject == "Re: Grüße"


def test_inbound_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        inbound(None).kind = "bounce"  # type: ignore[misc]

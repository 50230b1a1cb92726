"""What an incoming message is (a reply, an auto-reply, a bounce, a colleague's, or none of
those) and which of our emails it answers (DESIGN §3, rules 3-5). Pure: no I/O.

The rules run in order: bounces, auto-replies, internal mail, replies. Bounce and auto-reply
signals are small registered functions; the first that fires names the reason.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.header import Header, decode_header
from email.message import Message
from email.parser import HeaderParser
from email.utils import collapse_rfc2231_value, getaddresses
from html.parser import HTMLParser
from typing import Literal

import flufl.bounce

# Private, but flufl.bounce exports only functions that run every detector, LLNL's too.
from flufl.bounce._detectors.simplematch import SimpleMatch

Kind = Literal["reply", "auto_reply", "bounce", "internal", "unrelated"]
# A message that names none of ours: a reply only if the provider files it in one of our threads.
UNLINKED = "no In-Reply-To or References"

SNIPPET_CHARS = 200

# Senders of delivery reports. A person writing from postmaster@ is rare enough to accept.
DAEMON_MAILBOXES = ("mailer-daemon", "postmaster", "mail-daemon")
# Casefolded prefixes; each names a delivery failure in the common MTAs' wording.
BOUNCE_SUBJECTS = (
    "undeliverable:",  # Exchange, Outlook.com
    "undelivered mail returned to sender",  # Postfix
    "delivery status notification (failure)",  # Gmail
    "mail delivery failed",  # Exim
    "returned mail:",  # Sendmail
    "failure notice",  # qmail, Yahoo
    "delivery failure",
    "unzustellbar:",  # Exchange, German
    "non remis :",  # Exchange, French
)
# A report naming one of these in its subject is a warning that delivery is still being tried.
DELAYED_SUBJECT = re.compile(r"\b(?:delay|delayed|warning|still being retried)\b", re.I)
# Headers that only autoresponders set (vacation scripts, Yandex, cPanel, Zimbra).
AUTORESPONDER_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoreply-From", "X-Mail-Autoreply")
AUTO_PRECEDENCE = ("auto_reply", "bulk", "junk", "list")
# Casefolded subject prefixes: Outlook's own in its common languages, then other clients'.
AUTO_REPLY_SUBJECTS = (
    "automatic reply:",
    "automatische antwort:",
    "réponse automatique",
    "respuesta automática:",
    "risposta automatica:",
    "automatisch antwoord:",
    "out of office",
    "abwesenheitsnotiz",
    "autoreply",
    "auto-reply",
    "auto reply",
    "auto:",  # HCL/Lotus Notes
)
# "[EXTERNAL]" and the like, put in front of the subject by mail gateways.
SUBJECT_TAGS = re.compile(r"^(?:\s*\[[^\]]*\])+")

# Where quoted text starts: an attribution ("On … wrote:" and its German, French, Spanish and
# Dutch forms, which clients wrap onto a second line) or Outlook's separator or header block.
_OPENER = r"(?:On|Am|Le|El|Op)\s"
_VERB = r"\s(?:wrote|schrieb|a\s+écrit|escribió|schreef)\b"
QUOTE_START = re.compile(
    r"^[ \t]*(?:"
    rf"{_OPENER}[^\n]*(?:\n[^\n]*)?{_VERB}[^\n]*:[ \t]*$"
    rf"|{_OPENER}[^\n]*{_VERB}[^\n]*\n[^\n]*:[ \t]*$"
    r"|-{2,}\s*(?:Original Message|Ursprüngliche Nachricht|Message d'origine)\s*-{2,}"
    r"|(?:_{10,}[ \t]*\n\s*)?(?:From|Von|De)\s?:[^\n]*\n\s*(?:Sent|Gesendet|Envoyé|Date)\s?:"
    r")",
    re.MULTILINE | re.IGNORECASE,
)
# An RFC 3463 status (5.1.1) or, from older MTAs, a bare SMTP reply code (553).
DSN_STATUS = re.compile(r"\s*([245])(?:\.\d{1,3}\.\d{1,3}|\d\d)\b")
FAILED_ACTIONS = ("fail", "error")  # "failed" (RFC 3464), "failure", opensmtpd's "error"
ANGLE_ADDRESS = re.compile(r"<([^<>\s]+@[^<>\s]+)>")
BRACKETED_ID = re.compile(r"<([^<>]*)>")
MESSAGE_ID_LINE = re.compile(r"^Message-ID:[ \t]*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Incoming:
    """A message as a mailbox hands it to reply sync (the small interface of DESIGN §1)."""

    key: str  # the provider's id for the message
    raw: bytes
    thread_id: str | None = None


@dataclass(frozen=True)
class Inbound:
    kind: Kind
    sender: str  # lower-cased address from From; for a bounce, the daemon that reported it
    subject: str
    snippet: str  # the start of the new text: quotes dropped, whitespace collapsed
    message_id: str | None
    in_reply_to: str | None  # for a bounce: the returned original's Message-ID
    references: tuple[str, ...]
    failed_recipients: tuple[str, ...] = ()  # bounces: the addresses that failed, lower-cased
    reason: str = ""  # why it got this kind, e.g. "Auto-Submitted: auto-replied"


Signal = Callable[[Message], str | None]
# Does this look like a delivery report? Only then are flufl.bounce's heuristics asked, because
# some of them (LLNL's) take any ", someone@example.com," line in a person's text for a bounce.
BOUNCE_SIGNALS: list[Signal] = []
AUTO_REPLY_SIGNALS: list[Signal] = []


def _registered(registry: list[Signal]) -> Callable[[Signal], Signal]:
    def register(fn: Signal) -> Signal:
        registry.append(fn)
        return fn

    return register


bounce_signal = _registered(BOUNCE_SIGNALS)
auto_reply_signal = _registered(AUTO_REPLY_SIGNALS)


@dataclass(frozen=True)
class Wording:
    """A delivery failure's own words: after `intro`, each line `address` matches names a failed
    address, until `end` (once one is found) or the end of the text part."""

    name: str
    intro: re.Pattern[str]
    address: re.Pattern[str]
    end: re.Pattern[str]


def _i(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


# Shapes that flufl.bounce reads only in part: its Exchange detector stops after the first
# recipient, its Yahoo and AOL ones want a yahoo.* or aol.com daemon, and its GroupWise one
# skips addresses indented with a tab.
WORDINGS = (
    Wording(
        "Exchange",
        _i(r"did not reach the following recipient"),
        _i(r"^\s*(?:SMTP=)?([^\s@;<>]+@[^\s;<>]+);? on "),
        _i(r"^\s*-{2,}"),
    ),
    Wording(
        "Yahoo",
        _i(
            r"unable to deliver your message to the following address"
            r"|mail to the following recipients could not be delivered"
        ),
        _i(r"^\s*<?([^\s<>@]+@[^\s<>@:]+?)>?:?\s*$"),
        _i(r"^\s*---"),
    ),
    Wording(
        "GroupWise",
        _i(r"was undeliverable to the following"),
        _i(r"^\s*<?([^\s<>@]+@[^\s<>@]+?)>?(?:\s+\(.*\))?\s*$"),
        _i(r"^\s*$"),
    ),
)


def classify_inbound(
    message: Message, *, internal_domains: Collection[str], internal_addresses: Collection[str]
) -> Inbound:
    """What `message` is. A reply here only means it answers some message: whether that is one
    of ours is `credited_email`'s question."""
    sender = _sender(message)
    subject = _header(message, "Subject")
    message_id = next(iter(message_ids(_raw(message, "Message-ID"))), None)
    in_reply_to = next(iter(message_ids(_raw(message, "In-Reply-To"))), None)
    references = message_ids(_raw(message, "References"))
    report = _delivery_report(message)
    if report is not None:
        return Inbound(
            kind="bounce" if report.bounce else "unrelated",
            sender=sender,
            subject=subject,
            snippet="",
            message_id=message_id,
            in_reply_to=_returned_message_id(message) or in_reply_to,
            references=references,
            failed_recipients=report.failed,
            reason=report.reason,
        )
    kind: Kind
    if (reason := _first_reason(AUTO_REPLY_SIGNALS, message)) is not None:
        kind = "auto_reply"
    elif (reason := _internal(sender, internal_domains, internal_addresses)) is not None:
        kind = "internal"
    elif in_reply_to or references:
        kind, reason = "reply", "In-Reply-To" if in_reply_to else "References"
    else:
        kind, reason = "unrelated", UNLINKED
    return Inbound(
        kind=kind,
        sender=sender,
        subject=subject,
        snippet=snippet(_body_text(message)),
        message_id=message_id,
        in_reply_to=in_reply_to,
        references=references,
        reason=reason,
    )


def answered_ids(inbound: Inbound) -> tuple[str, ...]:
    """The Message-IDs `inbound` answers in the order they are credited: In-Reply-To, then
    References newest first. Look these up to build `credited_email`'s `ours`."""
    ids = [inbound.in_reply_to] if inbound.in_reply_to else []
    ids.extend(reversed(inbound.references))
    return tuple(dict.fromkeys(normalise_message_id(i) for i in ids))


def credited_email(inbound: Inbound, ours: Mapping[str, int]) -> int | None:
    """The id of our email `inbound` answers (DESIGN §3.5), or None when it answers none of
    ours. `ours` maps our Message-IDs, `<…>` as stored, to email ids."""
    for message_id in answered_ids(inbound):
        if (email_id := ours.get(message_id)) is not None:
            return email_id
    return None


def normalise_message_id(value: str) -> str:
    return "<" + "".join(value.split()).strip("<>") + ">"


def message_ids(value: str) -> tuple[str, ...]:
    """The Message-IDs in a Message-ID, In-Reply-To or References value, in order. Some
    clients drop the angle brackets: then each word with an @ is one."""
    found = BRACKETED_ID.findall(value) or [w for w in value.replace(",", " ").split() if "@" in w]
    ids = (normalise_message_id(i) for i in found)
    return tuple(i for i in ids if i != "<>")


def snippet(text: str) -> str:
    """The start of what the writer wrote: lines quoted with '>' dropped, and the quote an
    attribution or Outlook header block introduces. Text above it is the reply (top-posting);
    with nothing above it, the reply is below (bottom-posting) and only the marker goes."""
    kept = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(">"))
    if (quote := QUOTE_START.search(kept)) is not None:
        above = kept[: quote.start()]
        kept = above if above.strip() else kept[quote.end() :]
    words = " ".join(kept.split())
    if len(words) <= SNIPPET_CHARS:
        return words
    return words[: SNIPPET_CHARS - 1].rstrip() + "…"


# --- Headers --------------------------------------------------------------------------------


def _raw(message: Message, name: str) -> str:
    value = message.get(name)
    return "" if value is None else str(value)


def _header(message: Message, name: str) -> str:
    """A header's text with RFC 2047 words decoded and folding undone ('' when absent)."""
    value = message.get(name)
    if value is None:
        return ""
    # compat32 hands out a Header for raw 8-bit text, and only decode_header reads its bytes.
    raw: Header | str = value if isinstance(value, Header) else str(value)
    try:
        chunks = decode_header(raw)
    except HeaderParseError:
        chunks = [(str(raw), None)]
    text = "".join(c if isinstance(c, str) else _decoded(c, charset) for c, charset in chunks)
    return " ".join(text.split())


def _decoded(data: bytes, charset: str | None) -> str:
    """Bytes in their declared charset; undeclared 8-bit text is most likely UTF-8, and so is
    text in a charset Python does not know."""
    if not charset or charset == "unknown-8bit":
        charset = "utf-8"
    try:
        return data.decode(charset, errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def _sender(message: Message) -> str:
    """The From address (a bare `MAILER-DAEMON` is one too)."""
    found = [address for _name, address in getaddresses([_raw(message, "From")]) if address]
    address = found[0] if found else ""
    if "@" in address and not any(c.isspace() for c in address):
        return address.lower()
    # Some senders encode the whole header, address and all.
    inside = ANGLE_ADDRESS.search(_header(message, "From"))
    return (inside.group(1) if inside else address).lower()


def _first_reason(signals: Iterable[Signal], message: Message) -> str | None:
    for fires in signals:
        if (reason := fires(message)) is not None:
            return reason
    return None


def _internal(sender: str, domains: Collection[str], addresses: Collection[str]) -> str | None:
    """Configured internal domains cover their subdomains too (mx.example.com is example.com)."""
    if not sender:
        return None
    if sender in {a.strip().lower() for a in addresses}:
        return f"internal address {sender}"
    domain = sender.rpartition("@")[2]
    for internal in (d.strip().lower().lstrip("@") for d in domains):
        if internal and (domain == internal or domain.endswith("." + internal)):
            return f"internal domain {internal}"
    return None


# --- Bodies ---------------------------------------------------------------------------------


def _parts(message: Message) -> Iterator[Message]:
    """Every part, not descending into attached messages or a report's field blocks (which
    `Message.walk` would hand out as text/plain parts)."""
    yield message
    if message.get_content_maintype() == "multipart":
        yield from (p for child in _subparts(message) for p in _parts(child))


def _subparts(part: Message) -> list[Message]:
    payload = part.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    return _decoded(payload, part.get_content_charset()) if isinstance(payload, bytes) else ""


def _body_text(message: Message) -> str:
    """The text/plain body, else the text/html one as text; attachments are not the body."""
    leaves = [
        p
        for p in _parts(message)
        if p.get_content_maintype() == "text" and p.get_content_disposition() != "attachment"
    ]
    for part in leaves:
        if part.get_content_type() == "text/plain":
            return _text(part)
    for part in leaves:
        if part.get_content_type() == "text/html":
            return _HTMLText.of(_text(part))
    return ""


class _HTMLText(HTMLParser):
    """Visible text, a line break per block. <blockquote> is a quote (Gmail, Apple Mail,
    Thunderbird): left out like '>' lines."""

    SKIP = frozenset({"head", "script", "style", "title", "blockquote"})
    BLOCKS = frozenset(
        {"br", "p", "div", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.skipping = 0

    @classmethod
    def of(cls, html: str) -> str:
        parser = cls()
        parser.feed(html)
        parser.close()
        return "".join(parser.chunks)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCKS:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.chunks.append(data)


# --- Bounces --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Report:
    bounce: bool  # False: a report that is no failure (delayed, delivered, read)
    reason: str
    failed: tuple[str, ...] = ()


def _delivery_report(message: Message) -> _Report | None:
    """A delivery report (DSN, NDR, read receipt) or None. A report is a bounce only when
    delivery failed for good.

    RFC 3464 fields are read here rather than by flufl.bounce, which skips blocks that have a
    5.x.x Status but no Action. Other formats are read by `WORDINGS`, then flufl.bounce; mail
    that no signal marks as a report only by `WORDINGS` and flufl.bounce's "simple" phrases."""
    blocks = [b for b in _dsn_blocks(message) if "Action" in b or "Status" in b]
    if blocks:
        failed = [b for b in blocks if _failed(b)]
        return _Report(
            bounce=bool(failed),
            reason="DSN " + _describe(failed[0] if failed else blocks[0]),
            failed=_lowered(a for a in map(_dsn_recipient, failed) if a),
        )
    if _report_type(message) == "disposition-notification":
        return _Report(bounce=False, reason="read receipt (disposition-notification)")
    gate = _first_reason(BOUNCE_SIGNALS, message)
    if gate is None:
        return _unmarked_failure(message)
    if (worded := _worded_failures(message)) is not None:
        return _Report(bounce=True, reason=gate, failed=worded[1])
    temporary, permanent = _flufl_failures(message)
    if permanent:
        return _Report(bounce=True, reason=gate, failed=_decoded_addresses(permanent))
    if temporary or DELAYED_SUBJECT.search(_header(message, "Subject")):
        return _Report(bounce=False, reason=f"{gate} (delivery delayed)")
    # Plainly a failure report whose recipients no detector can read: still a bounce.
    return _Report(bounce=True, reason=gate)


def _report_type(message: Message) -> str:
    if message.get_content_type() != "multipart/report":
        return ""
    value = message.get_param("report-type", "", header="content-type")
    return (collapse_rfc2231_value(value) if isinstance(value, tuple) else value).lower()


def _unmarked_failure(message: Message) -> _Report | None:
    """A failure report without a daemon sender, a bounce subject or report fields, told by
    its wording: ours, then flufl.bounce's "simple" phrases. (Its other detectors would take a
    person's text for a bounce: LLNL's reads any ", someone@example.com," line, qmail's any
    "<someone@example.com>:" after "Hi. This is".) A message that answers another is a
    person's, whatever it quotes."""
    if "In-Reply-To" in message or "References" in message:
        return None
    if (worded := _worded_failures(message)) is None:
        try:
            _temporary, permanent = SimpleMatch().process(message)
        except Exception:  # one odd message must not stop the sync
            return None
        if not permanent:
            return None
        worded = ("simple", _decoded_addresses(permanent))
    name, failed = worded
    return _Report(bounce=True, reason=f"delivery failure wording ({name})", failed=failed)


def _flufl_failures(message: Message) -> tuple[frozenset[bytes], frozenset[bytes]]:
    try:
        return flufl.bounce.all_failures(message)
    except Exception:  # flufl.bounce has logged it; one odd report must not stop the sync
        return frozenset(), frozenset()


def _decoded_addresses(addresses: Iterable[bytes]) -> tuple[str, ...]:
    return _lowered(a.decode("ascii", "replace") for a in addresses)


def _worded_failures(message: Message) -> tuple[str, tuple[str, ...]] | None:
    """The first of `WORDINGS` that names failed addresses in a text part, and those."""
    texts = [_text(p) for p in _parts(message) if p.get_content_type() == "text/plain"]
    for wording in WORDINGS:
        found: list[str] = []
        for text in texts:
            listing = False
            for line in text.splitlines():
                if not listing:
                    listing = wording.intro.search(line) is not None
                elif (address := wording.address.match(line)) is not None:
                    found.append(address.group(1))
                elif found and wording.end.match(line):
                    break
        if found:
            return wording.name, _lowered(found)
    return None


def _dsn_blocks(message: Message) -> Iterator[Message]:
    for part in _parts(message):
        if part.get_content_type() == "message/delivery-status":
            yield from _subparts(part)


def _failed(block: Message) -> bool:
    """The Action decides: `failed` is given up on, whatever the Status (4.4.7 is a message
    that expired in the queue), and `delayed`, `delivered`, `relayed` or `expanded` are not.
    Without an Action, a 5.x.x (or 5xx) Status is a failure."""
    action = _header(block, "Action").lower()
    if action.startswith(FAILED_ACTIONS):
        return True
    if action:
        return False
    status = DSN_STATUS.match(_header(block, "Status"))
    return status is not None and status.group(1) == "5"


def _describe(block: Message) -> str:
    action = _header(block, "Action").split(" ")[0] or "none"
    status = _header(block, "Status").split(" ")[0]
    return f"Action: {action} {status}".rstrip()


def _dsn_recipient(block: Message) -> str:
    """The address as we sent it (Original-Recipient), else as the MTA last knew it."""
    for name in ("Original-Recipient", "Final-Recipient"):
        kind, _, address = _header(block, name).rpartition(";")
        if address.strip() and kind.strip().lower() in ("rfc822", ""):
            return address.strip().strip("<>")
    return ""


def _lowered(addresses: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({a.lower() for a in addresses}))


def _returned_message_id(message: Message) -> str | None:
    """The Message-ID of the message a report is about: the returned original's, else the one
    the report's fields name, else a Message-ID line in a copy quoted in its text."""
    parts = list(_parts(message))
    for part in parts:
        if part.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            headers = next(iter(_subparts(part)), None) or HeaderParser().parsestr(_text(part))
            if ids := message_ids(_raw(headers, "Message-ID")):
                return ids[0]
    for part in parts:
        if part.get_content_maintype() == "message":
            for block in _subparts(part):
                for name in ("Original-Message-ID", "X-Original-Message-ID"):  # MDN; Gmail
                    if ids := message_ids(_raw(block, name)):
                        return ids[0]
    for part in (p for p in parts if p.get_content_type() == "text/plain"):
        if (line := MESSAGE_ID_LINE.search(_text(part))) is not None:
            return line.group(1)
    return None


@bounce_signal
def _exchange_ndr(message: Message) -> str | None:
    return "X-MS-Exchange-Message-Is-Ndr" if "X-MS-Exchange-Message-Is-Ndr" in message else None


@bounce_signal
def _failed_recipients_header(message: Message) -> str | None:
    value = _header(message, "X-Failed-Recipients")
    return f"X-Failed-Recipients: {value}" if value else None


@bounce_signal
def _delivery_status_report(message: Message) -> str | None:
    if _report_type(message) != "delivery-status":
        return None
    return "Content-Type: multipart/report; report-type=delivery-status"


@bounce_signal
def _daemon_sender(message: Message) -> str | None:
    sender = _sender(message)
    return f"From: {sender}" if sender.partition("@")[0] in DAEMON_MAILBOXES else None


@bounce_signal
def _bounce_subject(message: Message) -> str | None:
    return _subject_prefix(message, BOUNCE_SUBJECTS)


def _subject_prefix(message: Message, prefixes: Iterable[str]) -> str | None:
    subject = unicodedata.normalize("NFC", _header(message, "Subject"))
    subject = SUBJECT_TAGS.sub("", subject).strip().casefold()
    return next((f"Subject: {p}" for p in prefixes if subject.startswith(p)), None)


# --- Auto-replies ---------------------------------------------------------------------------


@auto_reply_signal
def _auto_submitted(message: Message) -> str | None:
    """RFC 3834: anything but `no` is a machine's message."""
    token = _header(message, "Auto-Submitted").split(";")[0].strip().lower()
    return f"Auto-Submitted: {token}" if token and token != "no" else None


@auto_reply_signal
def _autoresponder_header(message: Message) -> str | None:
    for name in AUTORESPONDER_HEADERS:
        value = _header(message, name)
        if name in message and value.lower() not in ("no", "false", "0"):
            return f"{name}: {value}" if value else name
    return None


@auto_reply_signal
def _precedence(message: Message) -> str | None:
    value = _header(message, "Precedence").lower()
    return f"Precedence: {value}" if value in AUTO_PRECEDENCE else None


@auto_reply_signal
def _list_answering(message: Message) -> str | None:
    """A list's or help desk's autoresponder answering our email. (A person answering through
    a discussion list looks the same, and is counted as an auto-reply too.)"""
    if "In-Reply-To" not in message and "References" not in message:
        return None
    return next(
        (f"{name} on an answer" for name in ("List-Id", "List-Unsubscribe") if name in message),
        None,
    )


@auto_reply_signal
def _exchange_rule_reply(message: Message) -> str | None:
    """An Exchange inbox rule's reply (older out-of-office, "reply using a template") carries
    both. Neither alone: X-Auto-Response-Suppress asks others not to answer and Outlook sets it
    on messages people write too (meeting responses, add-ins); Inbox-Rules-Loop is also on a
    person's message that a rule forwarded."""
    if "X-Auto-Response-Suppress" in message and "X-MS-Exchange-Inbox-Rules-Loop" in message:
        return "X-Auto-Response-Suppress with X-MS-Exchange-Inbox-Rules-Loop"
    return None


@auto_reply_signal
def _auto_reply_subject(message: Message) -> str | None:
    return _subject_prefix(message, AUTO_REPLY_SUBJECTS)

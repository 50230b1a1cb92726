"""The one vocabulary of tables (DESIGN §2), as SQLAlchemy Core metadata.

Every timestamp is stored as UTC and read back timezone-aware, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always UTC and always timezone-aware in Python."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware UTC time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _created() -> Column[datetime]:
    return Column(
        "created_at", UTCDateTime(), nullable=False, server_default=text("CURRENT_TIMESTAMP")
    )


EVENT_KINDS = ("open", "click", "reply", "auto_reply", "bounce")

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False, server_default=""),
    Column("slack_user_id", String(32), unique=True),
    Column("timezone", String(64), nullable=False, server_default="UTC"),
    Column("role", String(16), nullable=False, server_default="member"),
    # "22:00-07:00" in the user's time zone: alerts that come then wait until it ends.
    Column("quiet_hours", String(11)),
    # In the user's feed token (/alerts?token=): `alerts link new` counts it up (mod 2**16),
    # which revokes every older link.
    Column("feed_version", Integer, nullable=False, server_default="0"),
    CheckConstraint("role IN ('member', 'admin')", name="role"),
    _created(),
)

mailboxes = Table(
    "mailboxes",
    metadata,
    Column("id", Id, primary_key=True),
    Column("provider", String(16), nullable=False),
    Column("address", String(320), nullable=False, unique=True),
    Column("owner_user_id", ForeignKey("users.id"), nullable=True),
    Column("credentials", LargeBinary),  # encrypted (store.crypto), never plain
    Column("sync_cursor", Text),  # Gmail historyId, Graph deltaLink, Maildir position
    Column("is_default", Boolean, nullable=False, server_default="0"),
    CheckConstraint("provider IN ('gmail', 'outlook', 'smtp', 'maildir')", name="provider"),
    _created(),
)

companies = Table(
    "companies",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("domain", String(253), unique=True),
    Column("attributes", JSON, nullable=False, default=dict),
    _created(),
    Column("updated_at", UTCDateTime()),
    Index(None, "name"),
)

endusers = Table(
    "endusers",
    metadata,
    Column("id", Id, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False, server_default=""),
    Column("role", String(200), nullable=False, server_default=""),
    Column("company_id", ForeignKey("companies.id"), index=True),
    Column("attributes", JSON, nullable=False, default=dict),
    Column("tracking_opt_out", Boolean, nullable=False, server_default="0"),
    Column("bounced_at", UTCDateTime()),
    _created(),
    Column("updated_at", UTCDateTime()),
)

templates = Table(
    "templates",
    metadata,
    Column("id", Id, primary_key=True),
    Column("key", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("format", String(16), nullable=False, server_default="markdown"),
    Column("description", Text, nullable=False, server_default=""),
    Column("track_opens", Boolean, nullable=False, server_default="1"),
    Column("track_clicks", Boolean, nullable=False, server_default="1"),
    Column("checksum", String(64), nullable=False),
    _created(),
    UniqueConstraint("key", "version"),
)

campaigns = Table(
    "campaigns",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(200), nullable=False, server_default=""),
    Column("template_id", ForeignKey("templates.id")),
    Column("audience", Text, nullable=False, server_default=""),
    Column("mode", String(16), nullable=False, server_default="individual"),
    Column("track_opens", Boolean, nullable=False),
    Column("track_clicks", Boolean, nullable=False),
    Column("sender_user_id", ForeignKey("users.id")),
    Column("mailbox_id", ForeignKey("mailboxes.id")),
    Column("status", String(16), nullable=False, server_default="draft"),
    Column("status_reason", Text),
    Column("planned_count", Integer, nullable=False, server_default="0"),
    Column("sent_count", Integer, nullable=False, server_default="0"),
    Column("failed_count", Integer, nullable=False, server_default="0"),
    Column("lease_owner", String(64)),
    Column("lease_expires_at", UTCDateTime()),
    CheckConstraint("mode IN ('individual', 'group')", name="mode"),
    CheckConstraint(
        "status IN ('draft', 'sending', 'paused', 'sent', 'failed', 'cancelled')", name="status"
    ),
    _created(),
)

emails = Table(
    "emails",
    metadata,
    Column("id", Id, primary_key=True),
    Column("campaign_id", ForeignKey("campaigns.id")),
    Column("template_id", ForeignKey("templates.id")),
    Column("mailbox_id", ForeignKey("mailboxes.id")),
    Column("sender_user_id", ForeignKey("users.id")),
    # Outcomes belong to the FIRST To recipient (DESIGN §3 rule 3).
    Column("enduser_id", ForeignKey("endusers.id"), index=True),
    Column("to_addrs", JSON, nullable=False),
    Column("cc_addrs", JSON, nullable=False, default=list),
    Column("subject", Text, nullable=False),
    Column("message_id", String(998), unique=True),
    Column("provider_message_id", String(255)),
    Column("thread_id", String(255), index=True),
    Column("in_reply_to", String(998)),
    Column("open_tracking", Boolean, nullable=False),
    Column("click_tracking", Boolean, nullable=False),
    Column("status", String(16), nullable=False, server_default="planned"),
    Column("error", Text),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    # The whole message as planned: a restart sends exactly this, never a re-render.
    Column("mime", LargeBinary),
    Column("sent_at", UTCDateTime()),
    CheckConstraint("status IN ('planned', 'sending', 'sent', 'failed')", name="status"),
    _created(),
    Index(None, "campaign_id", "status", "id"),  # a campaign's next emails to send
)

# Index 0 is always the hidden honeypot link; real links are numbered from 1.
links = Table(
    "links",
    metadata,
    Column("email_id", ForeignKey("emails.id", ondelete="CASCADE"), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("url", Text, nullable=False),
    Column("honeypot", Boolean, nullable=False, server_default="0"),
)

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True),  # monotonic: the notifier's cursor reads in id order
    Column("email_id", ForeignKey("emails.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("link_idx", Integer),
    Column("user_agent", Text),
    Column("ip", String(45)),
    Column("machine", Boolean, nullable=False, server_default="0"),
    Column("machine_reason", String(32)),
    Column("details", JSON),
    # Replies, auto-replies and bounces: the incoming message's Message-ID, so a re-sync
    # records nothing twice.
    Column("inbound_message_id", String(998), unique=True),
    # Opens and clicks: the hit's id from its journal record, so loading a journal twice
    # records nothing twice (tracking/loader.py; a unique index).
    Column("hit_id", String(32)),
    CheckConstraint("kind IN ('open', 'click', 'reply', 'auto_reply', 'bounce')", name="kind"),
    # The loader's look-back: this email's recent clicks (or opens) only.
    Index(None, "email_id", "kind", "at"),
    Index(None, "hit_id", unique=True),
)

# The Email Engagement object (DESIGN §3): one row per email, rates 0 / 100 / NULL, so that
# AVG() over a column gives Planhat's average over the emails where that tracking was on.
engagements = Table(
    "engagements",
    metadata,
    Column("email_id", ForeignKey("emails.id", ondelete="CASCADE"), primary_key=True),
    Column("enduser_id", ForeignKey("endusers.id")),
    Column("campaign_id", ForeignKey("campaigns.id")),
    Column("template_id", ForeignKey("templates.id")),
    Column("sender_user_id", ForeignKey("users.id")),
    Column("sent_at", UTCDateTime()),
    Column("open_rate", SmallInteger),
    Column("click_rate", SmallInteger),
    Column("reply_rate", SmallInteger, nullable=False, server_default="0"),
    Column("open_rate_raw", SmallInteger),
    Column("click_rate_raw", SmallInteger),
    Column("opens", Integer, nullable=False, server_default="0"),
    Column("opens_raw", Integer, nullable=False, server_default="0"),
    Column("clicks", Integer, nullable=False, server_default="0"),
    Column("clicks_raw", Integer, nullable=False, server_default="0"),
    Column("replies", Integer, nullable=False, server_default="0"),
    Column("first_opened_at", UTCDateTime()),
    Column("first_clicked_at", UTCDateTime()),
    Column("replied_at", UTCDateTime()),
    Column("auto_replied_at", UTCDateTime()),
    Column("bounced_at", UTCDateTime()),
    # "who has not opened / clicked / replied in this campaign"
    Index(None, "campaign_id", "open_rate"),
    Index(None, "campaign_id", "click_rate"),
    Index(None, "campaign_id", "reply_rate"),
    Index(None, "template_id"),
    Index(None, "enduser_id"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("event_kind", String(16), nullable=False),
    Column("template_key", String(100)),
    Column("campaign_id", ForeignKey("campaigns.id", ondelete="CASCADE")),
    Column("company_id", ForeignKey("companies.id", ondelete="CASCADE")),
    Column("enduser_id", ForeignKey("endusers.id", ondelete="CASCADE")),
    Column("sender_scope", String(8), nullable=False, server_default="mine"),
    Column("human_only", Boolean, nullable=False, server_default="1"),
    Column("throttle", String(16), nullable=False, server_default="every"),
    Column("channel", String(16), nullable=False),
    _created(),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Id, primary_key=True),
    Column("subscription_id", ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
    Column("next_attempt_at", UTCDateTime()),
    Column("delivered_at", UTCDateTime()),
    _created(),
    UniqueConstraint("subscription_id", "event_id", "channel"),
    Index(None, "status", "next_attempt_at"),
)

digests = Table(
    "digests",
    metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("enabled", Boolean, nullable=False, server_default="1"),
    Column("at_time", String(5), nullable=False, server_default="09:00"),
    Column("channel", String(16), nullable=False, server_default="email"),  # email | slack
    Column("last_sent_day", Date),
)

sequences = Table(
    "sequences",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("steps", JSON, nullable=False),
    Column("created_by", ForeignKey("users.id")),
    _created(),
)

enrollments = Table(
    "enrollments",
    metadata,
    Column("id", Id, primary_key=True),
    Column("sequence_id", ForeignKey("sequences.id", ondelete="CASCADE"), nullable=False),
    Column("enduser_id", ForeignKey("endusers.id", ondelete="CASCADE"), nullable=False),
    Column("step", Integer, nullable=False, server_default="0"),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("next_at", UTCDateTime()),
    _created(),
    UniqueConstraint("sequence_id", "enduser_id"),
)

ab_tests = Table(
    "ab_tests",
    metadata,
    Column("id", Id, primary_key=True),
    Column("campaign_id", ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
    Column("variant_template_ids", JSON, nullable=False),
    Column("first_batch_share", Integer, nullable=False, server_default="20"),
    Column("winner_template_id", ForeignKey("templates.id")),
    Column("status", String(16), nullable=False, server_default="running"),
    _created(),
)

# Named positions (the notifier's event cursor) and named leases (the active worker).
cursors = Table(
    "cursors",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False, server_default="0"),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
)

# Durable jobs (DESIGN §1, §7): slow work a command starts, run by the active worker. A job
# whose process died while running it is claimed again once its heartbeat is stale.
JOB_STATUSES = ("queued", "running", "done", "failed")

jobs = Table(
    "jobs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("arguments", JSON, nullable=False),
    Column("owner_user_id", ForeignKey("users.id", ondelete="CASCADE"), index=True),
    Column("status", String(16), nullable=False, server_default="queued"),
    Column("progress_done", Integer, nullable=False, server_default="0"),
    Column("progress_total", Integer),
    Column("progress_note", Text),  # "paused: daily limit" and the like
    Column("result", JSON),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("reply_to", JSON),  # where to say how it ended: {"slack": {…}} for a Slack command
    Column("claimed_by", String(64)),
    Column("heartbeat_at", UTCDateTime()),
    Column("run_after", UTCDateTime()),  # not before then (a paused send-out waits)
    _created(),
    Column("started_at", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
    CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="status"),
    Index(None, "status", "run_after"),
)

# Slack requests already handled (an event id, a button press): a retry or a second press has
# no second effect.
slack_seen = Table(
    "slack_seen",
    metadata,
    Column("key", String(200), primary_key=True),
    _created(),
)

# Sign-in links of `/beacon connect` (outreach.oauth): each works once, within 10 minutes, in the
# browser that opened it first, and connects only the mailbox address it names.
sign_ins = Table(
    "sign_ins",
    metadata,
    Column("id", String(64), primary_key=True),  # random (256 bits): the link and OAuth state
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("address", String(320), nullable=False),  # the user's own, or one an admin allowed
    Column("code_verifier", String(128)),  # PKCE, Google's flow
    Column("cookie_hash", String(64)),  # SHA-256 of the cookie of the browser that opened it
    _created(),
    Column("used_at", UTCDateTime()),
    CheckConstraint("provider IN ('gmail', 'outlook')", name="provider"),
)

# How far the hit loader got in each journal file (tracking/loader.py), moved in the same
# transaction as the hits it loaded. File names are unique across web hosts.
journal_progress = Table(
    "journal_progress",
    metadata,
    Column("file", String(255), primary_key=True),
    Column("loaded_to", BigInteger, nullable=False),  # the byte offset after the last record
    Column("at", UTCDateTime(), nullable=False),
)

# Journal records the loader could not load (a checksum that does not match, a field the
# database refuses): kept with the reason, for a person to look at; the rest loads on.
set_aside_hits = Table(
    "set_aside_hits",
    metadata,
    Column("id", Id, primary_key=True),
    Column("file", String(255), nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("record", Text, nullable=False),
    _created(),
    UniqueConstraint("file", "offset"),
)

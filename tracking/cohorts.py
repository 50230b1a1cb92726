"""Cohorts: the endusers who engaged, or did not, with the emails of one template or one
campaign (`cohort unengaged outage since 30d`), read from the engagement rows."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Select, case, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from outreach.filters import AudienceError
from store.schema import campaigns, engagements, templates

USAGE = "cohort engaged|unengaged <template key or campaign number> [since 30d]"
MAX_DAYS = 36_500  # a hundred years: older than any email, and far from datetime's limits
_MAX_ID = 2**63 - 1  # the ids are BIGINT
_WORD = re.compile(r"\S+")
_CAMPAIGN = re.compile(r"#?(\d+)")
_DAYS = re.compile(r"(\d+)d", re.IGNORECASE)
# After `cohort`, these make the text a filter on an attribute named cohort: `cohort = "spring"`.
_FILTER_WORDS = frozenset({"has", "contains", "in", "is", "not", "and", "or"})
_OPERATOR_CHARS = "=!<>~"


@dataclass(frozen=True)
class CohortSpec:
    """Exactly one of `template_key` (any version) and `campaign_id`."""

    engaged: bool
    template_key: str | None
    campaign_id: int | None
    since_days: int | None  # emails sent in the last N days; None: all of them
    target_at: int = field(default=0, compare=False)  # where the target was typed, for errors

    def __post_init__(self) -> None:
        if (self.template_key is None) == (self.campaign_id is None):
            raise ValueError("a cohort has a template key or a campaign id, not both or neither")


def parse_cohort(text: str) -> CohortSpec | None:
    """The cohort in `text`, or None when it is not one (its first word is not `cohort`, or it
    is a filter on an attribute named cohort). Words are case-insensitive; the target is a
    campaign number (`12` or `#12`) or else a template key. AudienceError for a malformed one."""
    words = list(_WORD.finditer(text))
    if not words or words[0].group().lower() != "cohort":
        return None
    if len(words) > 1 and _continues_a_filter(words[1].group()):
        return None
    mode = _word(words, 1)
    if mode is None or mode.group().lower() not in ("engaged", "unengaged"):
        raise AudienceError(
            f"expected engaged or unengaged after 'cohort', found {_found(mode)}: write {USAGE}",
            len(text) if mode is None else mode.start(),
        )
    engaged = mode.group().lower() == "engaged"
    target = _word(words, 2)
    if target is None or target.group().lower() == "since":
        raise AudienceError(
            f"expected a template key or a campaign number (like #12) after "
            f"'{mode.group()}', found {_found(target)}: write {USAGE}",
            len(text) if target is None else target.start(),
        )
    since_days = _since(text, words)
    template_key, campaign_id = _target(target)
    return CohortSpec(engaged, template_key, campaign_id, since_days, target_at=target.start())


def _continues_a_filter(second_word: str) -> bool:
    return second_word[0] in _OPERATOR_CHARS or second_word.lower() in _FILTER_WORDS


def _word(words: list[re.Match[str]], index: int) -> re.Match[str] | None:
    return words[index] if index < len(words) else None


def _found(word: re.Match[str] | None) -> str:
    return "end of input" if word is None else f"'{word.group()}'"


def _target(word: re.Match[str]) -> tuple[str | None, int | None]:
    text = word.group()
    number = _CAMPAIGN.fullmatch(text)
    if number is None:
        if text.startswith("#"):
            raise AudienceError(
                f"'{text}' is not a campaign number: write it like #12", word.start()
            )
        return text, None
    campaign_id = int(number.group(1))
    if not 0 < campaign_id <= _MAX_ID:
        raise AudienceError(f"there is no campaign #{campaign_id}", word.start())
    return None, campaign_id


def _since(text: str, words: list[re.Match[str]]) -> int | None:
    """The days of `since <N>d` after the target, if given."""
    keyword = _word(words, 3)
    if keyword is None:
        return None
    if keyword.group().lower() != "since":
        raise AudienceError(
            f"expected 'since' (like since 30d) or end of input after '{words[2].group()}', "
            f"found '{keyword.group()}'",
            keyword.start(),
        )
    value = _word(words, 4)
    days = None if value is None else _DAYS.fullmatch(value.group())
    if value is None or days is None:
        raise AudienceError(
            f"expected a number of days after 'since', like since 30d, found {_found(value)}",
            len(text) if value is None else value.start(),
        )
    count = int(days.group(1))
    if not 1 <= count <= MAX_DAYS:
        raise AudienceError(
            f"'since {value.group()}': give from 1 to {MAX_DAYS} days, like since 30d",
            value.start(),
        )
    extra = _word(words, 5)
    if extra is not None:
        raise AudienceError(
            f"expected end of input after 'since {value.group()}', found '{extra.group()}'",
            extra.start(),
        )
    return count


# --- Queries ---------------------------------------------------------------------------------


def cohort_select(connection: Connection, spec: CohortSpec, *, now: datetime) -> Select[tuple[int]]:
    """The cohort's enduser ids as one query (usable as a subquery), unordered. Reads the
    connection only to check that the template or campaign exists: AudienceError if not.

    The emails counted are those of the template (any version) or campaign that were sent, at
    or after `now - since_days` when given, and did not bounce. An enduser is engaged when one of
    them has a human open, a human click or a reply, unengaged when none has; the enduser of an
    email is the one its outcomes belong to (the first To recipient)."""
    if spec.campaign_id is not None:
        target = engagements.c.campaign_id == spec.campaign_id
        known = select(campaigns.c.id).where(campaigns.c.id == spec.campaign_id)
        missing = f"there is no campaign #{spec.campaign_id}"
    else:
        template_ids = select(templates.c.id).where(templates.c.key == spec.template_key)
        target = engagements.c.template_id.in_(template_ids)
        known = template_ids.limit(1)
        missing = f"there is no template or campaign `{spec.template_key}`"
    if connection.scalar(known) is None:
        raise AudienceError(
            f"{missing}: give a template key or a campaign number, like #12", spec.target_at
        )
    conditions = [
        target,
        engagements.c.enduser_id.is_not(None),
        engagements.c.sent_at.is_not(None),
        engagements.c.bounced_at.is_(None),
    ]
    if spec.since_days is not None:
        conditions.append(engagements.c.sent_at >= now - timedelta(days=spec.since_days))
    return (
        select(engagements.c.enduser_id)
        .where(*conditions)
        .group_by(engagements.c.enduser_id)
        .having(func.max(_engaged_email()) == (1 if spec.engaged else 0))
    )


def cohort_enduser_ids(connection: Connection, spec: CohortSpec, *, now: datetime) -> list[int]:
    """The ids of the cohort's endusers (see cohort_select), in id order."""
    query = cohort_select(connection, spec, now=now).order_by(engagements.c.enduser_id)
    return list(connection.scalars(query))


def _engaged_email() -> ColumnElement[int]:
    """1 for an email with a human open, a human click or a reply, else 0 (NULL rates too)."""
    happened = or_(
        engagements.c.open_rate == 100,
        engagements.c.click_rate == 100,
        engagements.c.reply_rate == 100,
    )
    return case((happened, 1), else_=0)

"""Slack's views methods for the fake Slack Web API: views.open, views.update and
views.publish, kept in the order they came (added through FakeSlack.methods)."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from tests.fakes.slack import FakeSlack

Json = dict[str, Any]


@dataclass
class FakeViews:
    opened: list[Json] = field(default_factory=list)  # views.open: the view, with its trigger
    updated: list[Json] = field(default_factory=list)
    published: dict[str, list[Json]] = field(default_factory=dict)  # user -> App Home views
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def install(self, fake: FakeSlack) -> FakeViews:
        fake.methods["views.open"] = self._open
        fake.methods["views.update"] = self._update
        fake.methods["views.publish"] = self._publish
        return self

    @staticmethod
    def _view(arguments: Json) -> Json:
        view = arguments["view"]
        return dict(json.loads(view) if isinstance(view, str) else view)

    def _open(self, arguments: Json) -> Json:
        view = {**self._view(arguments), "id": f"V{next(self._ids)}", "hash": "h1"}
        self.opened.append({**view, "trigger_id": arguments.get("trigger_id")})
        return {"ok": True, "view": view}

    def _update(self, arguments: Json) -> Json:
        view = {**self._view(arguments), "id": arguments.get("view_id")}
        self.updated.append(view)
        return {"ok": True, "view": view}

    def _publish(self, arguments: Json) -> Json:
        view = self._view(arguments)
        self.published.setdefault(str(arguments["user_id"]), []).append(view)
        return {"ok": True, "view": view}


def event_body(event: Json, event_id: str = "Ev0001") -> str:
    """An Events API callback as Slack posts it (JSON)."""
    return json.dumps(
        {"type": "event_callback", "team_id": "T0001", "event_id": event_id, "event": event}
    )


def view_submission_body(view: Json, values: Json, user: str) -> str:
    """A modal's Submit as Slack posts it: `payload=` with the view and what was filled in."""
    payload = {
        "type": "view_submission",
        "team": {"id": "T0001"},
        "user": {"id": user},
        "trigger_id": "1.2.5",
        "view": {**view, "state": {"values": values}},
    }
    return urlencode({"payload": json.dumps(payload)})


def view_action_body(view: Json, action_id: str, value: str, user: str) -> str:
    """Something done inside an open modal (typing into an input that dispatches actions)."""
    payload = {
        "type": "block_actions",
        "team": {"id": "T0001"},
        "user": {"id": user},
        "trigger_id": "1.2.6",
        "view": view,
        "actions": [{"action_id": action_id, "value": value, "type": "plain_text_input"}],
    }
    return urlencode({"payload": json.dumps(payload)})

"""The ``POST /_fake/<command>`` control namespace: the test hooks as JSON commands (no auth, latency or faults; not
counted in ``requests``), so that a fake in another process can be driven."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from tests.fakes.google_calendar.common import ApiError, _Response
from tests.fakes.google_calendar.consent import ConsentMixin
from tests.fakes.google_calendar.events import EventsMixin
from tests.fakes.google_calendar.faults import FaultsMixin
from tests.fakes.google_calendar.sync import SyncMixin
from tests.fakes.http_support import json_object


class ControlMixin(ConsentMixin, EventsMixin, SyncMixin, FaultsMixin):
    """Runs control commands against the hooks."""

    def _control_commands(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {
            "add_refresh_token": lambda a: self.add_refresh_token(a["refresh_token"], a["user"]),
            "issue_access_token": lambda a: {"access_token": self.issue_access_token(a["user"])},
            "add_calendar": lambda a: self.add_calendar(a["user"], a["calendar"]),
            "add_event": lambda a: self.add_event(a["user"], a["calendar"], a["body"]),
            "add_events": lambda a: {"ids": self.add_events(a["items"])},
            "edit_event": lambda a: self.edit_event(a["user"], a["calendar"], a["event_id"], a["changes"]),
            "delete_event": lambda a: self.delete_event(a["user"], a["calendar"], a["event_id"]),
            "events": lambda a: {"items": self.events(a["user"], a["calendar"],
                                                      include_deleted=bool(a.get("include_deleted")))},
            "expire_sync_tokens": lambda a: self.expire_sync_tokens(a["user"], a["calendar"]),
            "set_latency": lambda a: self.set_latency(float(a["seconds"])),
            "fail_next": lambda a: self.fail_next(
                int(a["n"]), int(a["status"]), str(a["reason"]),
                None if a.get("retry_after") is None else float(a["retry_after"]),
            ),
            "slow_next": lambda a: self.slow_next(int(a["n"]), float(a["seconds"])),
            "drop_next": lambda a: self.drop_next(int(a["n"])),
            "request_counts": lambda a: self.request_counts(),
            "reset_counts": lambda a: self.reset_counts(),
            "notifications": lambda a: {"items": [asdict(n) for n in self.notifications]},
            "add_oauth_client": lambda a: self.add_oauth_client(a["client_id"], a["client_secret"],
                                                                tuple(a.get("redirect_uris", ()))),
            "consents": lambda a: {"items": [asdict(c) for c in self.consents]},
            "unverify_email": lambda a: self.unverify_email(a["email"]),
            "fail_next_code_exchange": lambda a: self.fail_next_code_exchange(
                int(a.get("n", 1)), str(a.get("error", "invalid_grant")), str(a.get("description", "Bad Request"))),
        }

    def _control(self, method: str, command: str, body: bytes) -> _Response:
        """``POST /_fake/<command>`` with a JSON object of arguments; answers the hook's result as JSON."""
        handler = self._control_commands().get(command)
        if handler is None:
            return _Response(404, {"error": f"unknown control command {command!r}"})
        if method != "POST":
            return _Response(405, {"error": "control commands are POST"}, {"Allow": "POST"})
        try:
            result = handler(json_object(body))
        except ApiError as err:
            return _Response(err.status, err.body())
        except (KeyError, TypeError, ValueError) as exc:
            return _Response(400, {"error": f"bad arguments for {command}: {exc!r}"})
        return _Response(200, {} if result is None else result)

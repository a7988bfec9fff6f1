"""The ``POST /_fake/<command>`` control namespace: the test hooks as JSON commands, so that a fake in another
process (``python -m tests.fakes.graph``) can be driven."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from tests.fakes.graph.common import GraphError, _Response
from tests.fakes.graph.consent import ConsentMixin
from tests.fakes.graph.delta import DeltaMixin
from tests.fakes.graph.events import EventsMixin
from tests.fakes.graph.faults import FaultsMixin
from tests.fakes.graph.mailbox import MailboxMixin
from tests.fakes.http_support import json_object


class ControlMixin(ConsentMixin, MailboxMixin, EventsMixin, DeltaMixin, FaultsMixin):
    """Runs control commands against the hooks."""

    def _control(self, command: str, body: bytes) -> _Response:
        try:
            args = json_object(body, name="arguments")
            handler = _CONTROL.get(command)
            if handler is None:
                return _Response(404, {"error": f"unknown command {command!r}", "commands": sorted(_CONTROL)})
            return _Response(200, {"result": handler(self, args)})
        except (KeyError, TypeError, ValueError, GraphError) as exc:
            return _Response(400, {"error": repr(exc)})


def _control_add_events(fake: ControlMixin, args: dict[str, Any]) -> list[str]:
    ids = []
    for entry in args["events"]:
        ids.append(fake.add_event(entry["user"], entry["event"], calendar=entry.get("calendar"))["id"])
    return ids


_CONTROL: dict[str, Callable[[ControlMixin, dict[str, Any]], Any]] = {
    "add_user": lambda f, a: f.add_user(a["user"], time_zone=a.get("time_zone")),
    "add_users": lambda f, a: [f.add_user(u) for u in a["users"]],
    "add_event": lambda f, a: f.add_event(a["user"], a["event"], calendar=a.get("calendar")),
    "add_events": _control_add_events,
    "edit_event": lambda f, a: f.edit_event(a["user"], a["event_id"], a["changes"]),
    "delete_event": lambda f, a: f.delete_event(a["user"], a["event_id"]),
    "events": lambda f, a: f.events(a["user"]),
    "expire_delta_tokens": lambda f, a: f.expire_delta_tokens(a["user"], status=int(a.get("status", 410)),
                                                              code=a.get("code", "resyncRequired")),
    "set_latency": lambda f, a: setattr(f, "latency", float(a["seconds"])),
    "request_counts": lambda f, a: f.request_counts(),
    "reset_counts": lambda f, a: f.reset_counts(),
    "add_refresh_token": lambda f, a: f.add_refresh_token(a["refresh_token"], a["user"],
                                                          client_id=a.get("client_id")),
    "revoke_refresh_token": lambda f, a: f.revoke_refresh_token(a["refresh_token"]),
    "invalidate_access_tokens": lambda f, a: f.invalidate_access_tokens(a.get("user")),
    "set_mailbox_time_zone": lambda f, a: f.set_mailbox_time_zone(a["user"], a["time_zone"]),
    "set_automatic_replies": lambda f, a: f.set_automatic_replies(
        a["user"], a["status"], a.get("start"), a.get("end"), time_zone=a.get("time_zone", "UTC")),
    "fail_next": lambda f, a: f.fail_next(int(a["n"]), int(a["status"]), a["code"], a.get("retry_after"),
                                          where=a.get("where", "request"), path_contains=a.get("path_contains", "")),
    "slow_next": lambda f, a: f.slow_next(int(a["n"]), float(a["seconds"]), where=a.get("where", "request")),
    "drop_next": lambda f, a: f.drop_next(int(a["n"]), where=a.get("where", "request")),
    "block_mailbox": lambda f, a: f.block_mailbox(a["user"], int(a.get("status", 403)),
                                                  a.get("code", "ErrorAccessDenied")),
    "unblock_mailbox": lambda f, a: f.unblock_mailbox(a["user"]),
    "send_lifecycle_notification": lambda f, a: f.send_lifecycle_notification(a["subscription_id"], a["event"]),
    "notifications": lambda f, a: [{"url": n.url, "payload": n.payload, "status": n.status} for n in f.notifications],
    "subscriptions": lambda f, a: [f._public_subscription(s) for s in f.subscriptions.values()],
    "add_app": lambda f, a: f.add_app(a["client_id"], secret=a.get("secret"), certificate_pem=a.get("certificate_pem"),
                                      redirect_uris=tuple(a.get("redirect_uris", ()))),
    "consents": lambda f, a: [asdict(c) for c in f.consents],
    "fail_next_code_exchange": lambda f, a: f.fail_next_code_exchange(
        int(a.get("n", 1)), a.get("error", "invalid_grant"), int(a.get("aadsts", 70008)),
        a.get("description", "The provided authorization code or refresh token has expired due to inactivity.")),
}

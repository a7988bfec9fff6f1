"""A calendar link that fails: one log line when it starts failing and
one when it recovers, backoff between attempts, `reauth_required` when credentials are refused,
Retry-After honoured, and every other link syncing on as usual.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.memory.connector import MemoryConnector
from connectors.registry import Connectors
from syncd.core.calendars import ChangeSet, SyncWindow
from syncd.core.errors import AuthError, Bug, RateLimited, TransientError
from syncd.core.ooo import timed_content
from syncd.sync import LinkSyncer
from syncd.sync.schedule import MAX_BACKOFF
from tests.conftest import Clock, Harness, user

HarnessFactory = Callable[..., Harness]
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ALICE = "alice/mem/work"
JITTER = (0.9, 1.1)


class FailingCalendars(MemoryConnector):
    """Memory calendars where a calendar can be made to fail: ``changes`` raises a fresh error
    from ``failing[calendar]`` while it is set."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        super().__init__(clock=clock)
        self.failing: dict[str, Callable[[], Exception]] = {}
        self.calls: dict[str, int] = {}

    def changes(self, calendar: str, cursor: str | None, window: SyncWindow) -> ChangeSet:
        self.calls[calendar] = self.calls.get(calendar, 0) + 1
        make = self.failing.get(calendar)
        if make is not None:
            raise make()
        return super().changes(calendar, cursor, window)


@pytest.fixture
def h(harness_factory: HarnessFactory, clock: Clock) -> Harness:
    harness = harness_factory([user("alice", "work"), user("bob", "home")])
    calendars = FailingCalendars(clock)
    harness.syncer = LinkSyncer(harness.service, Connectors(harness.service.config.accounts,
                                                            overrides={"mem": calendars}), rng=random.Random(3))
    harness.calendars = calendars
    harness.sync()  # both links start healthy
    return harness


def cals(h: Harness) -> FailingCalendars:
    assert isinstance(h.calendars, FailingCalendars)
    return h.calendars


def link(h: Harness, calendar: str) -> dict[str, Any]:
    (row,) = [r for r in h.service.links() if r["calendar"] == calendar]
    return row


def link_id(h: Harness, calendar: str) -> int:
    return int(link(h, calendar)["id"])


def next_poll(h: Harness, calendar: str) -> datetime:
    return datetime.fromisoformat(link(h, calendar)["next_poll"].replace("Z", "+00:00"))


def lines(caplog: pytest.LogCaptureFixture, level: int, name: str = ALICE) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("syncd.sync") and r.levelno == level
            and f"link {name}:" in r.getMessage()]


def poll_when_due(h: Harness, calendar: str) -> None:
    """Advance to the link's next poll, as the daemon would, and sync what is due."""
    due = next_poll(h, calendar)
    h.clock.set(due - timedelta(seconds=1))
    assert link_id(h, calendar) not in h.syncer.claim_due(), "polled before its backoff ran out"
    h.clock.set(due)
    claimed = h.syncer.claim_due()
    assert link_id(h, calendar) in claimed
    for claimed_id in claimed:
        h.syncer.sync_link(claimed_id)


# -- one line per episode ------------------------------------------------------------------------
def test_a_failing_link_is_logged_once_and_its_recovery_once(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    cals(h).failing["work"] = lambda: TransientError("calendar API: HTTP 503 Service Unavailable")
    with caplog.at_level(logging.DEBUG, "syncd.sync"):
        for _ in range(5):
            outcomes = {o.name: o for o in h.sync()}
            h.clock.advance(timedelta(minutes=10))
        assert not outcomes[ALICE].ok and outcomes[ALICE].error == "calendar API: HTTP 503 Service Unavailable"
        assert outcomes["bob/mem/home"].ok
        warnings = lines(caplog, logging.WARNING)
        assert [r.getMessage() for r in warnings] == [
            f"link {ALICE}: sync failed: calendar API: HTTP 503 Service Unavailable"]
        assert not warnings[0].exc_info  # ours: no traceback
        assert len(lines(caplog, logging.DEBUG)) == 4  # the repeats only at debug level
        assert lines(caplog, logging.INFO) == []
        row = link(h, "work")
        assert (row["state"], row["failures"]) == ("error", 5)
        assert row["last_error"] == "calendar API: HTTP 503 Service Unavailable"
        caplog.clear()

        del cals(h).failing["work"]
        h.sync()
        h.sync()
        assert [r.getMessage() for r in lines(caplog, logging.INFO)] == [
            f"link {ALICE}: recovered after 5 failed attempt(s)"]
        assert lines(caplog, logging.WARNING) == []
    row = link(h, "work")
    assert (row["state"], row["failures"], row["last_error"]) == ("ok", 0, None)
    assert row["last_success"] == row["last_sync"]


def test_last_error_and_log_line_are_one_line(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    cals(h).failing["work"] = lambda: TransientError("HTTP 502 Bad Gateway\n<html>\n<body>upstream</body>")
    with caplog.at_level(logging.WARNING, "syncd.sync"):
        (outcome,) = [o for o in h.sync() if o.name == ALICE]
    assert outcome.error == link(h, "work")["last_error"] == "HTTP 502 Bad Gateway"
    (warning,) = lines(caplog, logging.WARNING)
    assert "\n" not in warning.getMessage()


def test_a_different_error_in_the_same_episode_is_not_logged_again(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    cals(h).failing["work"] = lambda: TransientError("timed out")
    with caplog.at_level(logging.INFO, "syncd.sync"):
        h.sync()
        cals(h).failing["work"] = lambda: RateLimited("HTTP 429 Too Many Requests", retry_after=5)
        h.sync()
        h.sync()
        assert len(lines(caplog, logging.WARNING)) == 1
    assert link(h, "work")["last_error"] == "HTTP 429 Too Many Requests"  # but the latest error is shown


# -- backoff ----------------------------------------------------------------------------------
def test_backoff_grows_and_is_capped(h: Harness) -> None:
    cals(h).failing["work"] = lambda: TransientError("connection refused")
    base = 60.0  # poll_interval 5 min, so backoff starts at one minute
    delays: list[float] = []
    h.clock.set(next_poll(h, "work"))
    h.syncer.sync_link(link_id(h, "work"))
    for failures in range(1, 12):
        delay = (next_poll(h, "work") - h.clock.now).total_seconds()
        nominal = min(MAX_BACKOFF.total_seconds(), base * 2 ** (failures - 1))
        assert JITTER[0] * nominal <= delay <= JITTER[1] * nominal, (failures, delay)
        delays.append(delay)
        assert link(h, "work")["failures"] == failures
        poll_when_due(h, "work")
    growing = delays[:7]  # 60 s, 2 min, ... until the cap
    assert growing == sorted(growing) and len(set(growing)) == len(growing)
    assert all(d <= JITTER[1] * MAX_BACKOFF.total_seconds() for d in delays)
    assert min(delays[7:]) >= JITTER[0] * MAX_BACKOFF.total_seconds()  # stays at the cap


def test_retry_after_is_a_minimum(h: Harness) -> None:
    cals(h).failing["work"] = lambda: RateLimited("HTTP 429 Too Many Requests", retry_after=1800)
    h.clock.set(next_poll(h, "work"))
    h.syncer.sync_link(link_id(h, "work"))
    for _ in range(8):
        assert next_poll(h, "work") - h.clock.now >= timedelta(seconds=1800)
        poll_when_due(h, "work")
    assert link(h, "work")["state"] == "error"


def test_retry_after_shorter_than_the_backoff_does_not_shorten_it(h: Harness) -> None:
    cals(h).failing["work"] = lambda: TransientError("timed out")
    for _ in range(4):
        h.sync()  # the backoff is now 8 minutes
    cals(h).failing["work"] = lambda: RateLimited("HTTP 429 Too Many Requests", retry_after=1)
    h.sync()
    assert next_poll(h, "work") - h.clock.now >= JITTER[0] * timedelta(minutes=16)


# -- credentials refused --------------------------------------------------------------------------
def test_auth_error_marks_the_link_reauth_required(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    cals(h).failing["work"] = lambda: AuthError("token revoked; run `syncd accounts login mem`")
    with caplog.at_level(logging.INFO, "syncd.sync"):
        for _ in range(3):
            h.sync()
        row = link(h, "work")
        assert (row["state"], row["failures"]) == ("reauth_required", 3)
        assert row["last_error"] == "token revoked; run `syncd accounts login mem`"
        assert next_poll(h, "work") - h.clock.now >= JITTER[0] * MAX_BACKOFF
        assert len(lines(caplog, logging.WARNING)) == 1
        # A helpdesk edit does not make a link that cannot log in poll at once.
        h.service.add_block("alice", timed_content(START + timedelta(days=1), START + timedelta(days=2)))
        assert next_poll(h, "work") > h.clock.now

        del cals(h).failing["work"]  # somebody logged in again
        h.sync()
        assert [r.getMessage() for r in lines(caplog, logging.INFO)] == [
            f"link {ALICE}: recovered after 3 failed attempt(s)"]
    assert link(h, "work")["state"] == "ok"
    assert len(cals(h).calendar("work").events) == 1  # the edit made while it could not sync


def test_a_transient_failure_turning_into_an_auth_failure_is_logged(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    cals(h).failing["work"] = lambda: TransientError("timed out")
    with caplog.at_level(logging.WARNING, "syncd.sync"):
        h.sync()
        h.sync()
        cals(h).failing["work"] = lambda: AuthError("invalid_grant")
        h.sync()
        h.sync()
        assert [r.getMessage() for r in lines(caplog, logging.WARNING)] == [
            f"link {ALICE}: sync failed: timed out", f"link {ALICE}: sync failed: invalid_grant"]
    assert link(h, "work")["state"] == "reauth_required"


# -- isolation --------------------------------------------------------------------------------------
def test_other_users_keep_syncing_while_one_link_fails(h: Harness) -> None:
    cals(h).failing["work"] = lambda: TransientError("connection reset")
    cals(h).add("home", timed_content(START - timedelta(hours=1), START + timedelta(hours=3), "Sick"))
    bob_block = h.service.add_block("bob", timed_content(START + timedelta(days=3), START + timedelta(days=4),
                                                         "Course"))
    alice_block = h.service.add_block("alice", timed_content(START + timedelta(days=3),
                                                             START + timedelta(days=4), "Trip"))
    outcomes = {o.name: o for o in h.sync()}

    assert not outcomes[ALICE].ok and outcomes["bob/mem/home"].ok
    assert h.service.status("bob").status == "away"  # pulled from bob's calendar
    assert h.calendars.find_by_block_id("home", bob_block.id) is not None  # pushed to it
    assert h.calendars.find_by_block_id("work", alice_block.id) is None
    assert link(h, "home")["state"] == "ok"

    del cals(h).failing["work"]
    h.sync()
    assert h.calendars.find_by_block_id("work", alice_block.id) is not None  # caught up


@pytest.mark.parametrize("make", [
    lambda: RuntimeError("connector blew up\nwith a second line"),
    lambda: Bug("connector returned an event without an id\nmore"),
], ids=["RuntimeError", "Bug"])
def test_an_unexpected_exception_fails_that_link_alone_with_one_traceback(
    h: Harness, caplog: pytest.LogCaptureFixture, make: Callable[[], Exception]
) -> None:
    cals(h).failing["work"] = make
    with caplog.at_level(logging.DEBUG, "syncd.sync"):
        for _ in range(4):
            outcomes = {o.name: o for o in h.sync()}
            assert outcomes["bob/mem/home"].ok
            assert not outcomes[ALICE].ok
    first_line = str(make()).splitlines()[0]
    assert outcomes[ALICE].error == first_line
    row = link(h, "work")
    assert (row["state"], row["failures"], row["last_error"]) == ("error", 4, first_line)
    with_traceback = [r for r in caplog.records if r.exc_info]
    assert len(with_traceback) == 1
    assert with_traceback[0].levelno == logging.WARNING and with_traceback[0].exc_info is not None
    assert type(with_traceback[0].exc_info[1]) is type(make())
    assert len(lines(caplog, logging.WARNING)) == 1

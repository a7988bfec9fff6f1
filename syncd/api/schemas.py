"""The request and response bodies of the HTTP API (they make its OpenAPI document)."""

from __future__ import annotations

import datetime as dt
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, WithJsonSchema


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    error: str
    message: str
    model_config = ConfigDict(extra="allow")


class CalendarIn(Strict):
    account: str
    calendar: str = "primary"
    sync_ooo: bool = True
    direction: Literal["two-way", "pull", "push"] = "two-way"


class UserIn(Strict):
    email: str
    timezone: str
    working_hours: dict[str, str | list[str]] | None = None
    working_hours_from: Literal["config", "calendar"] | None = Field(
        default=None, description='"calendar": the hours the linked calendars keep (Microsoft 365 mailbox '
                                  'settings, CalDAV calendar-availability), working_hours the fallback')
    holidays: dict[str, Any] | StrictBool | None = Field(
        default=None, description='whose public holidays: {"country": "SE", "subdivision": "", "observed": true}, '
                                  "or false for none; left out: the daemon's")
    days_off: list[str] | None = Field(default=None, description='company days off besides the daemon\'s, e.g. '
                                                                 '["2026-12-24"]')
    calendars: list[CalendarIn] | None = Field(
        default=None, description="the user's calendar links, all of them (left out: they stay as they are); "
                                  "creating or changing links needs the admin scope")
    replacement: str | None = Field(
        default=None, max_length=200,
        description="who takes this user's work while they are away (a user id; null: nobody; left out: it stays "
                    "as it is); an OOO block's own replacement wins while the block covers")


class ConnectLinkIn(Strict):
    account: str = Field(max_length=200, description="the account whose calendar the user connects")
    expires: str | None = Field(default=None, max_length=32,
                                description="how long the link works (e.g. 12h, 7d; 5m to 30d; default 7d)")


class ConnectLinkOut(BaseModel):
    url: str = Field(description="the one-time link to send the user (under api.public_url)")
    expires_at: str
    user: str
    email: str
    account: str


class CalendarOut(BaseModel):
    id: int
    account: str
    calendar: str
    sync_ooo: bool
    direction: str
    state: str
    last_success: str | None
    last_error: str | None


class EffectiveHoursOut(BaseModel):
    working_hours: dict[str, list[str]] = Field(description="local ranges per weekday")
    timezone: str = Field(description="the zone the ranges are in (a mailbox's may differ from the user's)")
    source: str = Field(description='where they came from: "config", or "<provider>:<account>" of a calendar')


class UserOut(BaseModel):
    id: str
    email: str
    timezone: str
    origin: str
    replacement: str | None
    working_hours: dict[str, list[str]] = Field(description="as configured (the fallback with working_hours_from "
                                                            '= "calendar")')
    working_hours_from: str
    effective_hours: EffectiveHoursOut = Field(description="the hours the status follows")
    holidays: dict[str, Any] | bool | None = Field(default=None, description="left out: the daemon's")
    days_off: list[str] = Field(default_factory=list)
    calendars: list[CalendarOut]


class UserSummary(BaseModel):
    id: str
    email: str
    timezone: str
    origin: str
    status: str | None
    reason: str | None
    since: str | None


class TeamIn(Strict):
    members: list[str]
    timezone: str | None = Field(default=None, description="IANA zone of the working hours")
    working_hours: dict[str, str | list[str]] | None = Field(
        default=None, description='e.g. {"mon": "09:00-17:00"}; left out: the business-time clock runs 24/7')
    holidays: dict[str, Any] | StrictBool | None = Field(
        default=None, description='{"country": "SE", "subdivision": "", "observed": true}, or false for none; '
                                  "left out: the daemon's")
    days_off: list[str] | None = Field(default=None, description="company days off besides the daemon's")
    min_available: int = Field(0, ge=0, le=10_000, description="fewest members that should be available; "
                                                               "0: no minimum")


class TeamOut(BaseModel):
    id: str
    members: list[str]
    origin: str = Field(description="config (change it in the config file) or api")
    timezone: str | None
    working_hours: dict[str, list[str]]
    holidays: dict[str, Any] | bool | None = Field(default=None, description="left out: the daemon's")
    days_off: list[str] = Field(default_factory=list)
    min_available: int = 0


class BusinessTimeOut(BaseModel):
    team: str
    start: str
    clock: Literal["working_hours", "24/7"]
    add: str | None = Field(default=None, description="as asked")
    add_seconds: int | None = None
    due: str | None = Field(default=None, description="when `add` of working time after `start` is used up")
    end: str | None = Field(default=None, description="as asked")
    working_seconds: int | None = Field(default=None, description="working time between `start` and `end`")


class FeedIn(Strict):
    show_titles: bool = Field(default=False, description="put the blocks' titles in the feed (default: only "
                                                         "\"<user> — away\")")


class FeedOut(BaseModel):
    id: str
    team: str
    show_titles: bool
    created_at: str | None


class NewFeedOut(FeedOut):
    url: str = Field(description="the secret address to subscribe to (shown only now; under api.public_url)")


class CoverageIntervalOut(BaseModel):
    start: str
    end: str
    available: int
    members_available: list[str]
    below_min: bool


class CoverageOut(BaseModel):
    team: str
    min_available: int
    intervals: list[CoverageIntervalOut]


class CoverageWarning(BaseModel):
    team: str
    from_: str = Field(alias="from")
    to: str
    available: int
    min_available: int

    model_config = ConfigDict(populate_by_name=True)


class StatusOut(BaseModel):
    user: str
    status: Literal["available", "away"]
    reason: str
    since: str | None
    until: str | None
    blocks: list[str]


class IntervalOut(BaseModel):
    start: str
    end: str
    status: Literal["available", "away"]
    reason: str | None = Field(description="ooo_started, holiday, day_off, working_hours (outside them when away, "
                                           "inside when available), manual, or null")
    block: str | None = Field(default=None, description="with ooo_started: the block (the one ending last)")
    holiday: str | None = Field(default=None, description="with holiday: its name")


class TimelineOut(BaseModel):
    user: str
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    intervals: list[IntervalOut] = Field(description="contiguous, in order, covering from..to")


class StatusIn(Strict):
    status: Literal["available", "away"]
    end_ooo_early: bool = False


class BlockIn(Strict):
    start: datetime | None = None
    end: datetime | None = None
    date: dt.date | None = None
    to_date: dt.date | None = None
    title: str | None = Field(default=None, max_length=500)
    replacement: str | None = Field(
        default=None, max_length=200,
        description="who takes the user's work while this block covers (a user id; wins over the user's "
                    "default); in a PATCH, null removes it and leaving it out keeps it")


class BlockPatch(BlockIn):
    pass


class BlockOut(BaseModel):
    id: str
    start: str
    end: str
    all_day: bool
    title: str
    source: str
    revision: int
    replacement: str | None


class RotationMemberIn(Strict):
    """A member with terms; a plain user id is read as ``{"user": id}``."""

    user: str
    weight: float = Field(default=1.0, gt=0, le=1000, allow_inf_nan=False,
                          description="share of assignments relative to the others (2: twice the share)")
    cap: int | None = Field(default=None, ge=1, le=10_000, description="most assignments per cap_window")


def _member_by_id(value: Any) -> Any:
    return {"user": value} if isinstance(value, str) else value


# One member's schema inline, so a refusal names the member's field rather than two alternatives.
_MEMBER_SCHEMA = WithJsonSchema({"anyOf": [{"type": "string"}, RotationMemberIn.model_json_schema()]})


class BlockWritten(BlockOut):
    warnings: list[CoverageWarning] = Field(
        default_factory=list, description="teams this block takes below their minimum, and when (the block is "
                                          "written all the same)")


class RotationIn(Strict):
    name: str = Field(min_length=1, max_length=300)
    members: list[Annotated[RotationMemberIn, BeforeValidator(_member_by_id), _MEMBER_SCHEMA]] = Field(
        default_factory=list, description="user ids, or {user, weight, cap} for a member with a weight or cap")
    teams: list[str] = Field(default_factory=list)
    policy: Literal["reset", "calibrate"] = "reset"
    cap_window: str | None = Field(default=None, max_length=32,
                                   description="the window members' caps count in (e.g. 1d, 8h; 1m to 90d)")


class RotationPatch(Strict):
    cap_window: str | None = Field(max_length=32, description="e.g. 1d; null: none (remove every cap first)")


class MemberOut(BaseModel):
    user: str
    available: bool
    status: str
    assignments: float
    weight: float
    cap: int | None
    recent: int
    last_assigned_at: str | None
    eligible: bool
    reason: str | None
    available_at: str | None


class RotationOut(BaseModel):
    id: str
    name: str
    policy: str
    cap_window: str | None
    counts_since: str | None
    users: list[str]
    teams: list[str]
    members: list[MemberOut]
    next: str | None


class MemberIn(Strict):
    user: str


class MemberPatch(Strict):
    """Only the fields given change; ``cap: null`` removes the cap."""

    available: bool | None = None
    weight: float | None = Field(default=None, gt=0, le=1000, allow_inf_nan=False)
    cap: int | None = Field(default=None, ge=1, le=10_000)


class IneligibleOut(BaseModel):
    user: str
    reason: str
    available_at: str | None


class UnavailableOut(IneligibleOut):
    route_to: str | None = Field(description="who takes the user's work meanwhile (their route); null: nobody")


class RouteOut(BaseModel):
    user: str
    status: Literal["available", "away"]
    route_to: str | None = Field(description="who takes the user's work: the user when available, else the first "
                                             "available person along their chain of replacements; null: nobody")
    chain: list[str] = Field(description="the replacements tried, in order (at most 10)")
    reason: Literal["available", "replacement", "no_replacement", "no_replacement_available"]


class NextOut(BaseModel):
    member: str | None
    eligible: list[str]
    ineligible: list[IneligibleOut]
    next_available_at: str | None


class AssignIn(Strict):
    idempotency_key: str = Field(min_length=1, max_length=300)
    start: datetime | None = None
    end: datetime | None = None


class AssignmentOut(BaseModel):
    assignment_id: str
    rotation: str
    member: str
    start: str | None
    end: str | None
    created_at: str | None
    replayed: bool


class EligibleIn(Strict):
    users: list[str]
    at: datetime | None = None


class EligibleOut(BaseModel):
    eligible: list[str]
    ineligible: list[UnavailableOut]


class LinkOut(BaseModel):
    id: int
    user: str
    account: str
    calendar: str
    direction: str
    enabled: bool
    sync_ooo: bool
    state: str
    last_sync: str | None
    last_success: str | None
    last_error: str | None
    failures: int
    held_deletions: int
    next_poll: str | None
    owner: str | None = Field(description="the replica syncing it now, or the one that synced it last")
    syncing: bool = Field(description="a replica holds its lease now")
    lag_s: float | None = Field(description="seconds since its last successful sync")
    connect_url: str | None = Field(default=None, description="for a link that needs its owner to grant access "
                                                              "again: a one-time link with which they do")


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text_}
    for code, text_ in ((400, "bad request"), (401, "missing or wrong token"), (403, "token lacks the scope"),
                        (404, "no such thing"), (409, "conflict: see message"), (412, "stale revision"),
                        (422, "invalid body or parameters"), (503, "temporarily unavailable"))
}

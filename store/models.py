"""syncd's tables. Instants are stored as UTC and always come back as aware datetimes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AssignmentRow",
    "Base",
    "BlockRow",
    "CalendarLinkRow",
    "ConnectLinkRow",
    "CredentialRow",
    "DeliveryRow",
    "EventLinkRow",
    "OutboxRow",
    "PushChannelRow",
    "ReplicaRow",
    "RotationMemberRow",
    "RotationRow",
    "RotationSeatRow",
    "SettingRow",
    "StatusLogRow",
    "TeamFeedRow",
    "TeamMemberRow",
    "TeamRow",
    "UserRow",
    "UserStatusRow",
    "UTCDateTime",
]


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in, aware UTC out, on SQLite (naive storage) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), date: Date(), float: Float()}


def _email_key(context: Any) -> str:
    return str(context.get_current_parameters()["email"]).lower()


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    # The email in lower case, unique: an email is one user's (it is whose calendars syncd reaches).
    email_key: Mapped[str] = mapped_column(String(320), unique=True, default=_email_key)
    timezone: Mapped[str] = mapped_column(String(64))
    working_hours: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"mon": ["09:00-17:00"]}
    origin: Mapped[str] = mapped_column(String(16), default="config")  # config | api
    created_at: Mapped[datetime]
    # Who takes this user's work while they are away (a user id; loops are allowed and resolved safely).
    replacement: Mapped[str | None] = mapped_column(String(200), index=True)
    # Own holidays and company days off (syncd.core.daysoff.spec_to_json); None: the daemon's only.
    days_off: Mapped[dict[str, Any] | None]
    working_hours_from: Mapped[str] = mapped_column(String(16), default="config", server_default="config")
    # The zone is the mailbox's ("timezone = calendar" in the config): kept from the last reading.
    timezone_from_calendar: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The working hours the status rules use when a calendar provides them (None: the config's
    # `working_hours` in `timezone`), their zone and where they came from (config | <provider>:<account>).
    effective_hours: Mapped[dict[str, Any] | None]
    effective_hours_zone: Mapped[str | None] = mapped_column(String(64))
    hours_source: Mapped[str] = mapped_column(String(300), default="config", server_default="config")


class CalendarLinkRow(Base):
    """One user's calendar, and the state of syncing it."""

    __tablename__ = "calendar_links"
    __table_args__ = (UniqueConstraint("user_id", "account", "calendar"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    account: Mapped[str] = mapped_column(String(200))
    calendar: Mapped[str] = mapped_column(String(1000))
    sync_ooo: Mapped[bool] = mapped_column(Boolean, default=True)
    direction: Mapped[str] = mapped_column(String(16), default="two-way")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)  # false once removed from config
    cursor: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(32), default="ok")  # ok | error | reauth_required | held
    last_sync_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_poll_at: Mapped[datetime | None] = mapped_column(index=True)
    held_deletions: Mapped[int] = mapped_column(Integer, default=0)
    release_deletions: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(200))  # the replica, as operators see it
    lease_process: Mapped[str | None] = mapped_column(String(200))  # which process exactly (syncd.replica)
    lease_expires: Mapped[datetime | None]
    # What the calendar says of its owner's working hours, when last read (working_hours_from =
    # "calendar"): found | none | unsupported | error, the hours and their zone, the problem.
    hours_state: Mapped[str | None] = mapped_column(String(16))
    hours: Mapped[dict[str, Any] | None]
    hours_zone: Mapped[str | None] = mapped_column(String(64))
    hours_problem: Mapped[str | None] = mapped_column(Text)
    hours_read_at: Mapped[datetime | None]


class BlockRow(Base):
    """An OOO block. Deleted blocks stay as tombstones so the deletion can reach every calendar."""

    __tablename__ = "ooo_blocks"
    __table_args__ = (Index("ix_ooo_blocks_user_live", "user_id", "deleted_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    start: Mapped[datetime]
    end: Mapped[datetime]
    all_day: Mapped[bool] = mapped_column(Boolean, default=False)
    start_date: Mapped[date | None]
    end_date: Mapped[date | None]  # exclusive
    timezone: Mapped[str | None] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(500), default="Out of office")
    source: Mapped[str] = mapped_column(String(300))  # helpdesk | calendar:<account>/<calendar>
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]
    # Who takes the user's work while this block covers (wins over the user's default).
    replacement: Mapped[str | None] = mapped_column(String(200), index=True)


class EventLinkRow(Base):
    """A block mirrored as an event in one calendar, with the base of the three-way merge."""

    __tablename__ = "event_links"
    __table_args__ = (
        UniqueConstraint("link_id", "event_id"),
        UniqueConstraint("link_id", "block_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("calendar_links.id", ondelete="CASCADE"), index=True)
    block_id: Mapped[str] = mapped_column(ForeignKey("ooo_blocks.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(1000))
    etag: Mapped[str | None] = mapped_column(String(500))
    base_hash: Mapped[str] = mapped_column(String(64))
    synced_at: Mapped[datetime]
    # syncd wrote this version of the event after the link's stored cursor was issued, and no
    # listing has shown it since: if the person deletes it first, only asking finds that out.
    unconfirmed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class UserStatusRow(Base):
    """The availability engine's state for one user (see syncd.core.availability.StatusState)."""

    __tablename__ = "user_status"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    auto: Mapped[str] = mapped_column(String(16))
    auto_reason: Mapped[str] = mapped_column(String(32))
    effective: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32))
    since: Mapped[datetime]
    evaluated_at: Mapped[datetime]
    block_id: Mapped[str | None] = mapped_column(String(64))
    manual: Mapped[str | None] = mapped_column(String(16))
    manual_at: Mapped[datetime | None]
    manual_by: Mapped[str | None] = mapped_column(String(200))
    next_boundary_at: Mapped[datetime | None] = mapped_column(index=True)
    # A transition prepared ahead of its instant (its outbox entries wait for it): the state at
    # that instant, its log rows and its outbox entries. An edit before the instant undoes it.
    staged_for: Mapped[datetime | None]
    staged: Mapped[dict[str, Any] | None]


class StatusLogRow(Base):
    __tablename__ = "status_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    previous: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(32))
    effective_at: Mapped[datetime]
    block_id: Mapped[str | None] = mapped_column(String(64))
    recorded_at: Mapped[datetime]


class OutboxRow(Base):
    """A status change to publish; written in the transaction that made the change."""

    __tablename__ = "outbox"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)  # the idempotency key
    user_id: Mapped[str] = mapped_column(String(200), index=True)  # kept after the user is deleted
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class DeliveryRow(Base):
    """One outbox event's delivery to one sink."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_pending", "sink", "state", "next_attempt_at"),)

    outbox_seq: Mapped[int] = mapped_column(ForeignKey("outbox.seq", ondelete="CASCADE"), primary_key=True)
    sink: Mapped[str] = mapped_column(String(200), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(200))
    # Which of the sink's partitions the user's deliveries are in (store.outbox.partition_of):
    # each partition is delivered by one replica at a time, so a user's events keep their order.
    partition: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class TeamRow(Base):
    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    created_at: Mapped[datetime]
    origin: Mapped[str] = mapped_column(String(16), default="api", server_default="api")  # config | api
    # The team's schedule for the business-time clock; no working hours: the clock runs 24/7.
    timezone: Mapped[str | None] = mapped_column(String(64))
    working_hours: Mapped[dict[str, Any] | None]  # {"mon": ["09:00-17:00"]}
    days_off: Mapped[dict[str, Any] | None]  # as UserRow.days_off
    # Fewer members available than this is "low coverage" (0: no minimum, no coverage events).
    min_available: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class TeamCoverageRow(Base):
    """What syncd has announced of a team's coverage (coverage.low / coverage.restored), and the
    events staged ahead for crossings of the minimum in the coming minute."""

    __tablename__ = "team_coverage"

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    below: Mapped[bool | None] = mapped_column(Boolean)  # as of evaluated_at; None: nothing announced yet
    evaluated_at: Mapped[datetime | None]
    next_check_at: Mapped[datetime | None] = mapped_column(index=True)
    # [{"seq": outbox seq, "at": ISO instant, "below": bool}] for events queued for a later instant
    staged: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class TeamMemberRow(Base):
    __tablename__ = "team_members"

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)


class RotationRow(Base):
    """A meeting rotation / assignment pool (seed 002)."""

    __tablename__ = "rotations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    policy: Mapped[str] = mapped_column(String(16), default="reset")  # reset | calibrate
    counts_since: Mapped[datetime]  # assignments before this instant no longer count (reset)
    created_at: Mapped[datetime]
    cap_window_s: Mapped[int | None] = mapped_column(Integer, default=None)  # members' caps count within it
    # Moved by triggers (migration 0016) on any change to the rotation's seats or assignments:
    # what the rotation engine keeps of them is right while it has not moved.
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class RotationMemberRow(Base):
    """A user or a whole team in a rotation; a team's members follow the team."""

    __tablename__ = "rotation_members"
    __table_args__ = (UniqueConstraint("rotation_id", "user_id", "team_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rotation_id: Mapped[str] = mapped_column(ForeignKey("rotations.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))


class RotationSeatRow(Base):
    """Per user in a rotation: the availability toggle and the calibration terms of the count."""

    __tablename__ = "rotation_seats"

    rotation_id: Mapped[str] = mapped_column(ForeignKey("rotations.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    available: Mapped[bool] = mapped_column(Boolean, default=True)
    baseline: Mapped[float] = mapped_column(default=0.0)  # calibrate: the average when they joined
    credit: Mapped[float] = mapped_column(default=0.0)  # calibrate: shares handed out while away
    joined_at: Mapped[datetime]
    weight: Mapped[float] = mapped_column(default=1.0, server_default="1")  # share relative to the others
    cap: Mapped[int | None] = mapped_column(Integer, default=None)  # most assignments per cap window


class AssignmentRow(Base):
    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("rotation_id", "idempotency_key"),
        Index("ix_assignments_rotation_time", "rotation_id", "created_at"),
        # A rotation's counts per member (stats, the least-assigned policy) read only this.
        Index("ix_assignments_rotation_user_time", "rotation_id", "user_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    rotation_id: Mapped[str] = mapped_column(ForeignKey("rotations.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(200))
    idempotency_key: Mapped[str] = mapped_column(String(300))
    start: Mapped[datetime | None]
    end: Mapped[datetime | None]
    created_at: Mapped[datetime]


class TeamFeedRow(Base):
    """A team's absence calendar that people subscribe to by a secret URL; only the token's
    SHA-256 digest is kept, so the URL cannot be read back, only revoked."""

    __tablename__ = "team_feeds"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    show_titles: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class CredentialRow(Base):
    """A per-user secret for one account (an OAuth refresh token), encrypted with the
    account's key; only its ciphertext is stored, and it names the user it is bound to."""

    __tablename__ = "credentials"

    account: Mapped[str] = mapped_column(String(200), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), default="refresh_token")
    ciphertext: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class ReplicaRow(Base):
    """A daemon sharing this database, and the config it runs (its fingerprint); ``seen_at`` is
    renewed while it lives."""

    __tablename__ = "replicas"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime]


class StatusChangesRow(Base):
    """One row: how many changes to users, their status and their blocks were committed. On
    SQLite, triggers move it in the writing transaction (migration 0015) and
    `Database.change_stamp` reads it; PostgreSQL sends notices instead and leaves it at 0."""

    __tablename__ = "status_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(Integer)


class SettingRow(Base):
    """A value the replicas share, such as the config they agreed on."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]


class PushChannelRow(Base):
    """A provider push channel (Google watch) that tells us when a linked calendar changed."""

    __tablename__ = "push_channels"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the channel id we chose
    link_id: Mapped[int] = mapped_column(ForeignKey("calendar_links.id", ondelete="CASCADE"), index=True)
    token_digest: Mapped[str] = mapped_column(String(64))  # sha256 of the channel token
    resource_id: Mapped[str] = mapped_column(String(500))
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]
    notified_at: Mapped[datetime | None]


class ConnectLinkRow(Base):
    """A one-time link with which an agent connects a calendar in the browser. Its URL is signed
    (the row id, user, account and expiry); the row makes it work once. A consent under way
    keeps the hashes of its OAuth ``state`` and of the browser's cookie, and what the provider's
    flow needs back (the PKCE verifier), until the browser returns."""

    __tablename__ = "connect_links"
    __table_args__ = (Index("ix_connect_links_user_account", "user_id", "account"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    account: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(String(16), default="invite")  # invite | renewal
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    state_digest: Mapped[str | None] = mapped_column(String(64), unique=True)  # sha256 of the OAuth state
    browser_digest: Mapped[str | None] = mapped_column(String(64))  # sha256 of the browser's cookie
    flow: Mapped[dict[str, Any] | None]  # what the provider's flow keeps until the callback
    flow_started_at: Mapped[datetime | None]

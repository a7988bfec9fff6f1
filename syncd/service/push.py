"""Push channels: the provider tells us a calendar changed, and that link is synced at once.

An account with ``push_url`` (the address at which the provider reaches this daemon's
``/v1/hooks/<provider>`` endpoint) gets one channel per enabled link. Each channel has a
random token; only its SHA-256 digest is stored, and a notification whose channel is
unknown, or whose token does not match, is refused (the API answers 403) and syncs
nothing. A valid notification only marks the link due: the poll job, which runs every
second, picks it up, so the HTTP answer is immediate and the provider never waits on a sync.
A notification for a link being synced makes it due again, since that sync may have listed
the calendar before the change (`store.push.mark_notified`).

Channels are renewed when a quarter of their lifetime is left, and stopped when their link
is disabled. Polling continues at ``push_poll_interval`` (default 1 h) as the fallback.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from connectors.base import PushNotice, PushReceiver
from connectors.registry import PROVIDERS, Connectors
from store import push as channels
from store.db import Transaction
from store.push import ChannelState as OpenRow
from store.push import OpenChannel, WantedChannel
from syncd.core.errors import SyncdError
from syncd.core.text import first_line
from syncd.service import Syncd

__all__ = ["PushChannels"]

log = logging.getLogger(__name__)
DEFAULT_TTL = timedelta(days=7)
MIN_TTL = timedelta(hours=1)
PER_PASS = 200  # channels opened per pass, so a big start-up does not hold the job for long
DEBOUNCE = timedelta(seconds=1)  # a channel's link is made due at most this often


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PushChannels:
    def __init__(self, service: Syncd, connectors: Connectors, *,
                 wake: Callable[[], None] | None = None) -> None:
        self.service = service
        self.db = service.db
        self.connectors = connectors
        self.wake = wake or (lambda: None)  # hurry the poll job along
        self._failing: set[int] = set()

    def receiver(self, provider: str) -> PushReceiver | None:
        """How ``provider``'s notifications read (None: it has none)."""
        found = PROVIDERS.get(provider)
        return found.push if found is not None else None

    def accounts(self) -> dict[str, str]:
        """Accounts with push configured: name -> the hook address."""
        found = {}
        for name, account in self.service.config.accounts.items():
            url = account.options.get("push_url")
            if url and self.connectors.supports(account.provider):
                found[name] = str(url)
        return found

    def _ttl(self, account: str) -> timedelta:
        options = self.service.config.accounts[account].options
        return max(MIN_TTL, options.get("channel_ttl") or DEFAULT_TTL)

    # -- keeping channels open -------------------------------------------------------------
    def refresh(self) -> int:
        """Open missing channels, renew those about to expire, stop those of disabled links.
        Returns how many channels were opened."""
        accounts = self.accounts()
        now = self.service.clock()
        wanted, open_ = self.db.read(lambda s: self._state(s, accounts))
        opened = 0
        live: set[int] = set()
        for channel in open_:
            if not channel.enabled or channel.account not in accounts:
                self._stop(channel)
                continue
            if channel.expires_at - now > self._ttl(channel.account) / 4:
                live.add(channel.link_id)
            elif channel.expires_at <= now:
                self._forget(channel.channel_id)
        for want in wanted:
            if want.link_id in live or opened >= PER_PASS:
                continue
            if self._open(want, accounts[want.account]):
                opened += 1
        # Renewed channels replace old ones: stop the old ones once the new ones are stored.
        if opened:
            _wanted, after = self.db.read(lambda s: self._state(s, accounts))
            newest: dict[int, OpenChannel] = {}
            for channel in after:
                if channel.link_id not in newest or channel.expires_at > newest[channel.link_id].expires_at:
                    newest[channel.link_id] = channel
            for channel in after:
                if channel.enabled and newest[channel.link_id] is not channel:
                    self._stop(channel)
        return opened

    def _state(self, session: Transaction, accounts: dict[str, str]) -> tuple[list[WantedChannel], list[OpenChannel]]:
        wanted = channels.wanted(session, list(accounts))
        open_ = [replace(c, enabled=c.enabled and c.account in accounts) for c in channels.open_channels(session)]
        return wanted, open_

    def _open(self, want: WantedChannel, address: str) -> bool:
        connector = self.connectors.for_account(want.account)
        channel_id = "syncd-" + secrets.token_hex(16)
        token = secrets.token_urlsafe(32)
        try:
            watch = connector.watch(connector.address(want.email, want.calendar), channel_id, token, address,
                                    self._ttl(want.account))
        except SyncdError as exc:
            if want.link_id not in self._failing:  # once per failure episode
                log.warning("link %d: cannot open a push channel (polling continues): %s", want.link_id,
                            first_line(exc))
                self._failing.add(want.link_id)
            return False
        self._failing.discard(want.link_id)

        def save(session: Transaction) -> None:
            channels.add(session, watch.channel_id, want.link_id, digest(token), watch.resource_id, watch.expires_at,
                         self.service.clock())
        self.db.run(save, what="saving a push channel")
        log.info("link %d: push channel open until %s", want.link_id, watch.expires_at.isoformat(timespec="minutes"))
        return True

    def _stop(self, channel: OpenChannel) -> None:
        try:
            connector = self.connectors.for_account(channel.account)
            connector.stop_watch(connector.address(channel.email, channel.calendar), channel.channel_id,
                                 channel.resource_id)
        except SyncdError as exc:
            # The channel expires by itself; notifications for it are refused meanwhile.
            log.info("push channel %s: stopping failed (%s); it is forgotten and expires on its own",
                     channel.channel_id, first_line(exc))
        self._forget(channel.channel_id)

    def _forget(self, channel_id: str) -> None:
        self.db.run(lambda s: channels.forget(s, channel_id), what="removing a push channel")

    def stop_all(self) -> int:
        """Close every channel (used when push is switched off, and by tests)."""
        _wanted, open_ = self.db.read(lambda s: self._state(s, self.accounts()))
        for channel in open_:
            self._stop(channel)
        return len(open_)

    # -- receiving -------------------------------------------------------------------------
    def providers(self) -> set[str]:
        """The providers some account has push notifications configured for."""
        return {self.service.config.accounts[name].provider for name in self.accounts()}

    def receive(self, notices: Sequence[PushNotice]) -> int:
        """Take a request's notices; returns how many were not ours (unknown channel, wrong
        token), which change nothing. The check is one read: a flood of forged notices writes
        nothing. A channel's link is made due at most once a second, however many come: one that
        comes sooner makes it due again at the end of that second, so no change is missed."""
        now = self.service.clock()
        known = self.db.read(lambda s: channels.get_many(s, {n.channel_id for n in notices if n.channel_id}),
                             what="checking push notifications")
        refused, changes, lifecycle = 0, [], []
        for notice in notices:
            row = known.get(notice.channel_id)
            if row is None or notice.token is None or not hmac.compare_digest(row.token_digest, digest(notice.token)):
                refused += 1
            elif notice.lifecycle:
                lifecycle.append((row, notice.lifecycle))
            elif notice.resource_id and row.resource_id and not hmac.compare_digest(row.resource_id,
                                                                                    notice.resource_id):
                refused += 1
            elif notice.state != "sync":  # "sync" is the handshake after opening: nothing changed yet
                if row.notified_at is None or now - row.notified_at >= DEBOUNCE:
                    changes.append((row.id, now))
                elif row.notified_at <= now:
                    # Within the window: not dropped (the sync the last one started may have
                    # listed the calendar before this change) but deferred to the window's end,
                    # once; later ones in the window find that already pending.
                    changes.append((row.id, row.notified_at + DEBOUNCE))
        if refused:
            log.debug("refused %d push notification(s): unknown channel or wrong token", refused)
        if changes or lifecycle:
            self.db.run(lambda s: self._record(s, sorted(dict(changes).items()), lifecycle, now),
                        what="recording push notifications")
            if changes or any(event == "missed" for _row, event in lifecycle):
                self.wake()
        return refused

    def _record(self, session: Transaction, changed: list[tuple[str, datetime]],
                lifecycle: list[tuple[OpenRow, str]], now: datetime) -> None:
        for channel_id, due in changed:
            channels.mark_notified(session, channel_id, due)
        for row, event in lifecycle:
            if event == "reauthorizationRequired":
                channels.expire(session, row.id, now)  # renewed on the next pass (a new subscription replaces it)
            elif event == "subscriptionRemoved":
                channels.forget(session, row.id)  # opened again on the next pass
            elif event == "missed":
                # Notifications were lost: list the calendar from scratch rather than trust the cursor.
                channels.resync(session, row.link_id, now)
            else:
                log.info("push channel %s: lifecycle event %r ignored", row.id, event)

    def notify(self, channel_id: str, token: str | None, state: str | None, resource_id: str | None = None) -> bool:
        """One notification; False when it is not ours (unknown channel, wrong token)."""
        return self.receive([PushNotice(channel_id, token, state, resource_id)]) == 0

    def lifecycle(self, channel_id: str, token: str | None, event: str) -> bool:
        """One lifecycle notification (renew, re-create, or catch up on what was missed)."""
        return self.receive([PushNotice(channel_id, token, lifecycle=event)]) == 0

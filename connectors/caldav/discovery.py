"""Which collection a link's calendar is.

A link's calendar is the collection's URL (absolute, or a path on the account's server), or
a calendar's display name (or the last segment of its URL), found once through the
account's principal and calendar home set with the ``caldav`` library. What was found is
kept for the connector's lifetime.
"""

from __future__ import annotations

from urllib.parse import urljoin

import requests

from connectors.caldav.base import CalDAVBase
from connectors.caldav.objects import stem
from syncd.core.errors import AuthError, ConfigError, TransientError

__all__ = ["DiscoveryMixin"]


class DiscoveryMixin(CalDAVBase):
    """Link calendar -> collection URL."""

    def _collection(self, calendar: str) -> str:
        with self._lock:
            known = self._collections.get(calendar)
        if known is not None:
            return known
        if calendar.startswith(("http://", "https://")):
            found = calendar if calendar.endswith("/") else calendar + "/"
        elif calendar.startswith("/"):
            found = urljoin(self.url, calendar if calendar.endswith("/") else calendar + "/")
        else:
            found = self._discover(calendar)
        with self._lock:
            self._collections[calendar] = found
        return found

    def _discover(self, name: str) -> str:
        """A calendar by display name (or URL segment), through principal -> calendar home set."""
        from caldav.davclient import DAVClient
        from caldav.lib import error as caldav_error

        client = DAVClient(url=self.url, username=self.username, password=self.password,
                           ssl_verify_cert=self.ca_bundle or True, timeout=int(self.timeout))
        try:
            calendars = client.principal().calendars()  # type: ignore[no-untyped-call]
            names = []
            for cal in calendars:
                display = cal.get_display_name() or ""
                segment = stem(str(cal.url))
                names.append(display or segment)
                if name.lower() in (display.lower(), segment.lower()):
                    return str(cal.url) if str(cal.url).endswith("/") else str(cal.url) + "/"
        except caldav_error.AuthorizationError as exc:
            raise AuthError(f"caldav: {self.url}: the server refused the username or password") from exc
        except (caldav_error.DAVError, requests.RequestException, OSError) as exc:
            raise TransientError(f"caldav: finding calendar {name!r} on {self.url} failed: {exc}") from exc
        finally:
            client.close()
        raise ConfigError(f"caldav: no calendar named {name!r} at {self.url} (found: {', '.join(names) or 'none'})")

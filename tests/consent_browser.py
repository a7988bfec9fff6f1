"""A browser for tests that connect calendars without one: plain HTTPS requests that open a
provider's consent page (the fakes'), type an address, press a button, and hand back what
would reach syncd's callback (the redirect's query, or the fields a ``form_post`` page sends)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urljoin, urlsplit

import requests

from tests.fakes.consent_page import read_form

__all__ = ["ConsentBrowser"]


@dataclass
class ConsentBrowser:
    session: requests.Session

    @classmethod
    def trusting(cls, ca_bundle: str) -> ConsentBrowser:
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would replace verify=
        session.verify = ca_bundle
        return cls(session)

    def consent(self, url: str, button: str = "allow", **typed: str) -> dict[str, str]:
        """Open the consent page at ``url``, type ``typed`` (e.g. ``email=``), press ``button``."""
        page = self.session.get(url, allow_redirects=False)
        assert page.status_code == 200, page.text
        form = read_form(page.text)
        decision = self.session.post(urljoin(url, form.action), data=form.submit(button, **typed),
                                     allow_redirects=False)
        if decision.status_code == 200:  # response_mode=form_post: a page the browser sends on
            return dict(read_form(decision.text).submit("continue"))
        assert decision.status_code == 302, decision.text
        return dict(parse_qsl(urlsplit(decision.headers["Location"]).query, keep_blank_values=True))

    def close(self) -> None:
        self.session.close()

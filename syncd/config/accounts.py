"""Calendar accounts: each provider's options, read and checked as its folder declares them."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from connectors.registry import PROVIDERS
from syncd.config.base import ReaderBase
from syncd.config.model import SECRET_KEYS, AccountConfig, Options
from syncd.config.table import Table
from syncd.core.calendars import OooRules
from syncd.core.options import Option, OptionError

__all__ = ["AccountsReader"]


class AccountsReader(ReaderBase):
    def account(self, t: Table) -> AccountConfig:
        provider = PROVIDERS[t.choice("provider", tuple(PROVIDERS))]
        known = {option.name: option for option in provider.options}
        t.allow(("name", "provider", "ooo_rules", "domains", *known,
                 *(f"{k}_env" for k, o in known.items() if o.kind is str)))
        name = t.string("name")
        data, from_env = self.resolve_env(t, (k for k, o in known.items() if o.kind is str))
        self.note_inline(t, (k for k, o in known.items() if o.secret))
        resolved = Table(t.file, t.path, data)
        options = {key: self.option(resolved, option) for key, option in known.items() if key in data}
        rules = OooRules()
        if t.has("ooo_rules"):
            if not provider.ooo_rules:
                users = ", ".join(p.name for p in PROVIDERS.values() if p.ooo_rules)
                t.fail("ooo_rules", f"only used by {users} accounts; {provider.name} marks out-of-office events itself")
            rules = self.ooo_rules(t.table("ooo_rules"))
        try:
            provider.check(options)
        except OptionError as exc:
            t.fail(exc.key, exc.message)
        secret = {k for k, o in known.items() if o.secret} | SECRET_KEYS
        return AccountConfig(name=name, provider=provider.name, options=Options(options, secret=secret | from_env),
                             ooo_rules=rules, domains=self.domains(t))

    def domains(self, t: Table) -> tuple[str, ...]:
        """The email domains whose users this account may act for; none given: any."""
        found = []
        for i, domain in enumerate(t.strings("domains", ())):
            value = domain.strip().lower().lstrip("@")
            if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", value):
                t.fail(f"domains[{i}]", f"not a domain name: {domain!r} (e.g. \"example.com\")")
            found.append(value)
        return tuple(dict.fromkeys(found))

    def option(self, t: Table, option: Option) -> Any:
        """One provider option, read and checked as its declaration says."""
        key = option.name
        if option.kind is bool:
            return t.boolean(key)
        if option.kind is int:
            low, high = option.limits
            number = t.integer(key, minimum=low)
            if number > high:
                t.fail(key, f"must be at most {high}, got {number}")
            return number
        if option.kind is timedelta:
            return t.duration(key, timedelta(0))
        if option.choices:
            return t.choice(key, option.choices)
        value = t.string(key, empty=True)
        if option.url and value:
            self.http_url(t, key, value)
        if option.file and value:
            value = self.path(value)
        return value

    def ooo_rules(self, t: Table) -> OooRules:
        t.allow(("categories", "keywords", "all_events"))
        categories = t.strings("categories", ())
        keywords = t.strings("keywords", ())
        for key, values in (("categories", categories), ("keywords", keywords)):
            if any(not v.strip() for v in values):
                # An empty keyword matches every summary: say so rather than mark everything OOO.
                t.fail(key, "contains an empty string (to treat every event as OOO, use all_events = true)")
        return OooRules(categories=categories, keywords=keywords, all_events=t.boolean("all_events", False))


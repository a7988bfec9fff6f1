"""How events look on the wire and the GET listings: rendering (time zone, extended properties, ``$select``),
``GET .../events`` with its ``$filter`` over extended properties, ``calendarView`` and instances, ``$expand``,
``$top``/``$skip`` paging."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from tests.fakes.graph.common import GraphError, _Response
from tests.fakes.graph.recurrence import RecurrenceMixin
from tests.fakes.graph.state import _Mailbox
from tests.fakes.graph.timezones import _parse_query_instant, _render_time

_EXT_PROP_ID = re.compile(
    r"^(?P<type>[A-Za-z]+)\s+(?:\{(?P<guid>[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-"
    r"[0-9A-Fa-f]{12})\}\s+(?P<kind>Name|Id)\s+(?P<name>.+)|(?P<tag>0x[0-9A-Fa-f]{1,4}))$",
    re.IGNORECASE,
)
_STRING = r"'((?:[^']|'')*)'"
_FILTER_ANY = re.compile(r"^\s*singleValueExtendedProperties/any\(\s*(\w+)\s*:\s*(.*)\)\s*$", re.IGNORECASE)
_EXPAND = re.compile(r"^\s*singleValueExtendedProperties(?:\(\s*\$filter\s*=\s*id\s+eq\s+" + _STRING + r"\s*\))?\s*$",
                     re.IGNORECASE)


def _odata_string(text: str) -> str:
    return text.replace("''", "'")


def _ext_key(prop_id: str) -> tuple[str, ...]:
    match = _EXT_PROP_ID.match(prop_id.strip())
    if not match:
        raise GraphError(400, "ErrorInvalidProperty", f"The extended property id '{prop_id}' is not valid.")
    if match.group("tag"):
        return (match.group("type").lower(), "tag", match.group("tag").lower())
    return (match.group("type").lower(), match.group("guid").lower(), match.group("kind").lower(), match.group("name"))


class ListingMixin(RecurrenceMixin):
    """Rendering of stored items and instances, and the paged event listings."""

    # ------------------------------------------------------------------------------------ rendering
    def _render(self, box: _Mailbox, item: dict[str, Any], tz_name: str, *, expand: bool | str = False,
                select: list[str] | None = None, delta: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if delta:
            out["@odata.type"] = "#microsoft.graph.event"
        out["@odata.etag"] = f'W/"{item["changeKey"]}"'
        for key, value in item.items():
            if key.startswith("_"):
                continue
            out[key] = copy.deepcopy(value)
        out["start"] = _render_time(item["_start"], tz_name)
        out["end"] = _render_time(item["_end"], tz_name)
        if "originalStart" not in out and item.get("type") in ("occurrence", "exception"):
            out["originalStart"] = item.get("originalStart")
        if expand and not delta:
            props = item.get("_props")
            if props is None and item.get("seriesMasterId"):
                master = box.events.get(item["seriesMasterId"])
                props = master["_props"] if master else []
            props = props or []
            if isinstance(expand, str):
                wanted = _ext_key(expand)
                props = [p for p in props if _ext_key(p["id"]) == wanted]
            if props:
                out["singleValueExtendedProperties"] = [{"id": p["id"], "value": p["value"]} for p in props]
        if select:
            keep = {s.strip() for s in select} | {"id", "@odata.etag", "@odata.type", "singleValueExtendedProperties"}
            out = {k: v for k, v in out.items() if k in keep}
        return out

    # ------------------------------------------------------------------------------------ listing
    @staticmethod
    def _one(query: dict[str, list[str]], name: str) -> str | None:
        values = query.get(name.lower())
        return values[-1] if values else None

    def _expand_arg(self, query: dict[str, list[str]]) -> bool | str:
        expand = self._one(query, "$expand")
        if expand is None:
            return False
        match = _EXPAND.match(expand)
        if not match:
            raise GraphError(400, "BadRequest", f"Parsing OData Select and Expand failed: '{expand}' is not supported "
                                                f"by the fake.")
        return _odata_string(match.group(1)) if match.group(1) is not None else True

    def _select_arg(self, query: dict[str, list[str]]) -> list[str] | None:
        select = self._one(query, "$select")
        return select.split(",") if select else None

    def _window(self, query: dict[str, list[str]]) -> tuple[datetime, datetime]:
        start, end = self._one(query, "startDateTime"), self._one(query, "endDateTime")
        if not start or not end:
            raise GraphError(400, "ErrorInvalidParameter", "This request requires a time window specified by the "
                                                           "query string parameters StartDateTime and EndDateTime.")
        lo, hi = _parse_query_instant(start, "startDateTime"), _parse_query_instant(end, "endDateTime")
        if hi < lo:
            raise GraphError(400, "ErrorInvalidParameter", "The end of the time window is before its start.")
        return lo, hi

    def _page(self, box: _Mailbox, items: list[dict[str, Any]], path: str, query: dict[str, list[str]],
              tz_name: str, page_pref: int | None, *, expand: bool | str = False) -> _Response:
        top = self._one(query, "$top")
        skip = int(self._one(query, "$skip") or 0)
        size = int(top) if top else (page_pref or self.default_page_size)
        if size < 1:
            raise GraphError(400, "BadRequest", "Invalid $top value.")
        select = self._select_arg(query)
        window = items[skip: skip + size]
        body: dict[str, Any] = {
            "@odata.context": f"{self.graph_url}/$metadata#users('{box.object_id}')/events",
            "value": [self._render(box, i, tz_name, expand=expand, select=select) for i in window],
        }
        if skip + size < len(items):
            params = {k: v[-1] for k, v in query.items() if k != "$skip"}
            params["$skip"] = str(skip + size)
            if not top:
                params["$top"] = str(size)
            body["@odata.nextLink"] = f"{self.base_url}{path}?{urlencode(params, quote_via=quote, safe='$')}"
        return _Response(200, body)

    def _calendar_view(self, box: _Mailbox, calendar: str, path: str, query: dict[str, list[str]], tz_name: str,
                       page_pref: int | None) -> _Response:
        lo, hi = self._window(query)
        return self._page(box, self._instances(box, calendar, lo, hi), path, query, tz_name, page_pref,
                          expand=self._expand_arg(query))

    def _list_events(self, box: _Mailbox, calendar: str, path: str, query: dict[str, list[str]], tz_name: str,
                     page_pref: int | None) -> _Response:
        items = [e for e in box.events.values() if e["_calendar"] == calendar]
        flt = self._one(query, "$filter")
        if flt:
            matcher = self._filter(flt)
            items = [e for e in items if matcher(e)]
        return self._page(box, items, path, query, tz_name, page_pref, expand=self._expand_arg(query))

    def _filter(self, text: str) -> Callable[[dict[str, Any]], bool]:
        """``singleValueExtendedProperties/any(ep: ep/id eq '...' [and <value condition>])``."""
        match = _FILTER_ANY.match(text)
        unsupported = GraphError(400, "ErrorInvalidUrlQueryFilter",
                                 f"The fake only supports extended-property filters, not '{text}'.")
        if not match:
            raise unsupported
        alias, body = re.escape(match.group(1)), match.group(2).strip()
        id_part = re.match(rf"^{alias}/id\s+eq\s+{_STRING}\s*(?:and\s+(.*))?$", body, re.IGNORECASE)
        if not id_part:
            raise unsupported
        wanted = _ext_key(_odata_string(id_part.group(1)))
        condition = (id_part.group(2) or "").strip()
        test: Callable[[str], bool]
        if not condition:
            def test(value: str) -> bool:
                return True
        elif m := re.match(rf"^{alias}/value\s+(eq|ne)\s+{_STRING}$", condition, re.IGNORECASE):
            op, literal = m.group(1).lower(), _odata_string(m.group(2)).lower()

            def test(value: str) -> bool:
                return (value.lower() == literal) == (op == "eq")
        elif m := re.match(rf"^(contains|startswith)\(\s*{alias}/value\s*,\s*{_STRING}\s*\)$", condition,
                           re.IGNORECASE):
            fn, literal = m.group(1).lower(), _odata_string(m.group(2)).lower()

            def test(value: str) -> bool:
                return literal in value.lower() if fn == "contains" else value.lower().startswith(literal)
        else:
            raise unsupported

        def matcher(item: dict[str, Any]) -> bool:
            return any(_ext_key(p["id"]) == wanted and test(p["value"]) for p in item["_props"])

        return matcher

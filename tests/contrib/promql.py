"""The metric names a PromQL expression (or a Grafana variable query) refers to."""

from __future__ import annotations

import re

__all__ = ["metric_names"]

# Words that are not metric names: aggregation and binary keywords. Functions are recognised by
# the "(" after them.
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
             "offset", "inf", "nan"}
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def metric_names(expr: str) -> set[str]:
    """Every metric name in ``expr``: ``sum by (le) (rate(x_bucket{a="b"}[5m]))`` → {"x_bucket"}.
    ``label_values(metric, label)`` (a Grafana variable query) gives its metric."""
    values = re.fullmatch(r"\s*label_values\(\s*(?:([A-Za-z_:][\w:]*)\s*,\s*)?\w+\s*\)\s*", expr)
    if values is not None:
        return {values[1]} if values[1] else set()
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _LABEL_LISTS.sub(" ", text)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = match[1], match[2]
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names

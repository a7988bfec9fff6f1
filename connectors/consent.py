"""What the browser consent of every provider shares: reading the answer a provider redirected
the browser back with, the one place its wording for the person at the browser lives."""

from __future__ import annotations

from collections.abc import Mapping

from syncd.core.errors import ConsentRefused
from syncd.core.text import one_line

__all__ = ["MAX_ERROR_TEXT", "code_of", "missing_scopes"]

MAX_ERROR_TEXT = 200  # of a provider's error_description, quoted to the person at the browser


def code_of(answer: Mapping[str, str], provider: str) -> str:
    """The authorization code in ``answer``; `ConsentRefused` for a refusal or an error the
    provider sent instead (``error=access_denied`` when the person said no)."""
    error = answer.get("error")
    if error == "access_denied":
        raise ConsentRefused("denied", f"You did not allow access at {provider}, so nothing was connected. "
                                       "Open the link again and choose Allow to connect your calendar.")
    if error:
        said = one_line(answer.get("error_description") or "", MAX_ERROR_TEXT)
        raise ConsentRefused("provider", f"{provider} answered with an error ({one_line(error, 64)}"
                                         f"{': ' + said if said else ''}). Open the link again; if this "
                                         "happens again, tell your helpdesk administrator.")
    code = answer.get("code")
    if not code:
        raise ConsentRefused("provider", f"{provider} sent the browser back without an authorization code. "
                                         "Open the link again.")
    return code


def missing_scopes(granted: str | list[str] | None, needed: tuple[str, ...], provider: str) -> None:
    """`ConsentRefused` when the person left out a permission syncd needs (providers let them
    untick each one)."""
    if granted is None:
        return  # the provider grants what was asked when it does not say
    have = set(granted.split() if isinstance(granted, str) else granted)
    if not set(needed) <= have:
        raise ConsentRefused("scope", f"{provider} did not give syncd access to your calendar (a permission was "
                                      "left out). Open the link again and allow every permission it asks for.")

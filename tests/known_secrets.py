"""Secret values the tests use. No log line may ever contain one (see conftest's
``no_secret_in_logs``): syncd must not log tokens, passwords or keys, whatever goes wrong."""

from __future__ import annotations

SECRETS: set[str] = {
    "whsec_test",  # webhook signing secret (test_sinks)
    "api-token-s3cret",  # API token (test_config)
    "fake-client-secret",  # the fake Entra ID app's client secret
    "alice-password",  # the CalDAV test servers' password
    "1//alice-token", "1//alice-secret-token", "rt-bob-1",  # OAuth refresh tokens
}


def register(*values: str) -> None:
    """Add values (fake-issued access tokens, generated keys) to what logs must not show."""
    SECRETS.update(v for v in values if v and len(v) >= 8)

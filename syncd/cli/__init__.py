"""The `syncd` command line.

Exit codes: 0 done; 1 some calendar link failed (sync) or a transient failure; 2 bad
config or bad input; 3 "set available" while out of office needs --end-ooo-early.
Errors an operator can fix are one line on stderr, never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from syncd.cli.commands import dispatch
from syncd.cli.parser import parser
from syncd.config import Config, find_config_path, load_config
from syncd.core.errors import Bug, ConfigError, ConfirmationRequired, RetryLater, SyncdError, UserInputError
from syncd.daemon.logs import setup_logging

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "credentials" and args.credentials == "new-key":
        from syncd.service.credentials import new_key
        print(new_key())  # needs no config: it is what goes into one
        return 0
    json_logs = False
    try:
        config = load_config(find_config_path(args.config, os.environ))
        setup_logging(config.daemon.log_level, config.daemon.log_format)
        json_logs = config.daemon.log_format == "json"
        if args.command == "check-config":
            return _check_config(config)
        return dispatch(args, config)
    except ConfirmationRequired as exc:
        _error(exc, json_logs)
        return 3
    except (ConfigError, UserInputError) as exc:
        _error(exc, json_logs)
        return 2
    except (RetryLater, SyncdError) as exc:
        if isinstance(exc, Bug):
            raise
        _error(exc, json_logs)
        return 1
    except KeyboardInterrupt:
        return 130


def _error(exc: Exception, json_logs: bool) -> None:
    """The one line an operator reads; with JSON logs, a log record like every other stderr line."""
    if json_logs:
        logging.getLogger("syncd.cli").error("%s", exc)
    else:
        print(f"syncd: {exc}", file=sys.stderr)


def _check_config(config: Config) -> int:
    mode = config.path.stat().st_mode
    if config.inline_secrets and mode & 0o077:
        shown = ", ".join(config.inline_secrets[:3]) + (" ..." if len(config.inline_secrets) > 3 else "")
        print(f"syncd: warning: {config.path.name} holds secrets ({shown}) and other users may read it "
              f"(mode {mode & 0o777:o}); run `chmod 600 {config.path.name}`, or give them as KEY_env",
              file=sys.stderr)
    links = sum(len(u.calendars) for u in config.users)
    print(f"{config.path}: ok ({len(config.users)} users, {len(config.accounts)} accounts, {links} calendar "
          f"links, {len(config.sinks)} sinks)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

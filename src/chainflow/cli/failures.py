"""How a command ends when it fails: one line on stderr, never a traceback.

Exit codes: 1 for a failure (`error: …`), 2 for a usage error (an unknown option, a value the
parser refuses), 130 for Ctrl-C. An exception nobody expected is a bug: it is still one line
(its type only, since its text may hold a value the user typed), and the traceback is logged
at debug level."""

import os
import sys
from typing import NoReturn

import typer

# Typer (0.29, pinned) vendors click: its parser raises these, not `click`'s own classes.
from typer._click.exceptions import NoArgsIsHelpError, UsageError

from chainflow.core.errors import ChainflowError
from chainflow.core.redaction import scrub_text


def run_app(app: typer.Typer) -> NoReturn:
    """Run the CLI and exit with its code; every failure becomes one line on stderr."""
    try:
        code = app(standalone_mode=False)
    except ChainflowError as exc:
        _fail(f"error: {exc.detail}", 1)
    except NoArgsIsHelpError as exc:
        typer.echo(exc.format_message())  # no arguments at all: show the help, as --help does
        sys.exit(exc.exit_code)
    except UsageError as exc:
        _fail(_usage_line(exc), exc.exit_code)
    except typer.Abort:
        _fail("error: aborted", 1)
    except Exception as exc:  # the last resort: a bug, but still one line
        _log_traceback(exc)
        _fail(
            f"error: unexpected {type(exc).__name__}; set CHAINFLOW_LOG_LEVEL=debug "
            "to log the traceback",
            1,
        )
    sys.exit(code if isinstance(code, int) else 0)


def _log_traceback(exc: Exception) -> None:
    if os.environ.get("CHAINFLOW_LOG_LEVEL", "").strip().lower() != "debug":
        return
    import structlog

    from chainflow.core.logging import configure_logging, get_logger

    if not structlog.is_configured():  # it failed before its settings were read
        configure_logging(json_format=False, level="debug")
    get_logger(__name__).error("cli.crashed", exc_info=exc)  # through the redacting pipeline


def _usage_line(exc: UsageError) -> str:
    message = " ".join(exc.format_message().split())  # click may wrap a hint onto a new line
    command = exc.ctx.command_path if exc.ctx is not None else "chainflow"
    return f"error: {message} (see `{command} --help`)"


def _fail(line: str, code: int) -> NoReturn:
    # Never quote a private key: click's usage errors repeat the argument they refuse, and
    # `chainflow wallet import 0x<key>` is an easy mistake (issue 14).
    typer.echo(scrub_text(line), err=True)
    sys.exit(code)

"""Options shared by commands, and the checks of free-text and chain-id options, run by the
parser: a bad value is one usage line (exit 2), never a database error. The rules are the
API's (`core/fields.py`)."""

import re
import unicodedata
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

if TYPE_CHECKING:
    from pydantic import TypeAdapter

HostOpt = Annotated[str | None, typer.Option(help="bind address")]
PortOpt = Annotated[int | None, typer.Option(help="bind port (0: a free one)", min=0, max=65535)]

TEXT_MAX_CHARS = 200  # the width of the `label` and `name` columns


def text_option(value: str | None) -> str | None:
    """A label or name: UTF-8, no NUL or other control character, at most 200 characters."""
    if value is None:
        return None
    try:
        value.encode("utf-8")  # argv bytes that are not UTF-8 arrive as lone surrogates
    except UnicodeEncodeError:
        raise typer.BadParameter("must be UTF-8 text") from None
    # Control characters (newlines, terminal escapes) would forge lines of `list` output.
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise typer.BadParameter("must not contain control characters")
    if len(value) > TEXT_MAX_CHARS:
        raise typer.BadParameter(f"must be at most {TEXT_MAX_CHARS} characters")
    return str(_validated("text", value))


def one_line(text: str) -> str:
    """Stored text as one line of output: each control character shown as its escape (a label
    stored before the API refused them must not forge lines or steer the terminal)."""
    if not any(unicodedata.category(char) == "Cc" for char in text):
        return text
    return "".join(
        char.encode("unicode_escape").decode() if unicodedata.category(char) == "Cc" else char
        for char in text
    )


def chain_ids_option(values: list[int] | None) -> list[int] | None:
    """Chain ids as the API takes them: positive and below 2**53."""
    for value in values or []:
        _validated("chain_id", value)
    return values


_DURATION = re.compile(r"([0-9]{1,7})([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
MAX_EXPIRY_S = 3650 * 86_400
_RATE = re.compile(r"([0-9]{1,7}(?:\.[0-9]{1,3})?)(?:/s)?")
MAX_RATE_PER_S = 1_000_000


def duration_option(value: str | None) -> str | None:
    """`30d`, `12h`, `90m` or `3600s`, up to 10 years; the number of seconds, as text."""
    if value is None:
        return None
    found = _DURATION.fullmatch(value.strip())
    seconds = int(found.group(1)) * _UNIT_S[found.group(2)] if found else 0
    if not 0 < seconds <= MAX_EXPIRY_S:
        raise typer.BadParameter(
            "must be a positive duration such as 30d, 12h, 90m or 3600s, at most 3650d"
        )
    return str(seconds)


def rate_option(value: str | None) -> str | None:
    """`R/s` (or `R`): requests per second, above 0 and at most 1,000,000; R, as text."""
    if value is None:
        return None
    found = _RATE.fullmatch(value.strip())
    rate = float(found.group(1)) if found else 0.0
    if not 0 < rate <= MAX_RATE_PER_S:
        raise typer.BadParameter(
            "must be requests per second such as 50/s, above 0, at most 1000000"
        )
    return f"{rate:g}"


_Field = Literal["text", "chain_id"]


@cache
def _adapters() -> "dict[_Field, TypeAdapter[Any]]":
    """Built when a command first checks a value: pydantic and the field types took a third
    of `chainflow --help`'s start-up."""
    from pydantic import TypeAdapter

    from chainflow.core.fields import ChainId, TextStr

    return {"text": TypeAdapter(TextStr), "chain_id": TypeAdapter(ChainId)}


def _validated(field: _Field, value: object) -> Any:
    from pydantic import ValidationError

    try:
        return _adapters()[field].validate_python(value)
    except ValidationError as exc:
        # The message only: pydantic's own text would repeat the value.
        raise typer.BadParameter(exc.errors()[0]["msg"].lower()) from None

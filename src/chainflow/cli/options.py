"""Options shared by commands, and the checks of free-text and chain-id options, run by the
parser: a bad value is one usage line (exit 2), never a database error. The rules are the
API's (`core/fields.py`)."""

import unicodedata
from typing import Annotated, Any

import typer
from pydantic import TypeAdapter, ValidationError

from chainflow.core.fields import ChainId, TextStr

HostOpt = Annotated[str | None, typer.Option(help="bind address")]
PortOpt = Annotated[int | None, typer.Option(help="bind port", min=1, max=65535)]

TEXT_MAX_CHARS = 200  # the width of the `label` and `name` columns
_TEXT: TypeAdapter[str] = TypeAdapter(TextStr)
_CHAIN_ID: TypeAdapter[int] = TypeAdapter(ChainId)


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
    return str(_validated(_TEXT, value))


def chain_ids_option(values: list[int] | None) -> list[int] | None:
    """Chain ids as the API takes them: positive and below 2**53."""
    for value in values or []:
        _validated(_CHAIN_ID, value)
    return values


def _validated(adapter: TypeAdapter[Any], value: object) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        # The message only: pydantic's own text would repeat the value.
        raise typer.BadParameter(exc.errors()[0]["msg"].lower()) from None

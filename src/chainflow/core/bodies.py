"""The base of every request body: strict JSON types, text that is valid Unicode.

Types are strict so that a value is never read as another type: `"chain_id": true` is not
chain 1, `1.0` is not the integer 1, `"5"` is not 5, `1` is not `true`. The one textual number
is an amount in wei, which is a decimal string by contract (it outgrows JSON's exact integers);
fields that are text on the wire by nature (a date-time, an enum value) opt out with
`Strict(False)` (see `Timestamp`). Path and query parameters are text, parsed as such.

JSON can spell a lone UTF-16 surrogate (`"\\ud800"`), which no UTF-8 encoder accepts: such a
string would fail later, in the database driver or the JSON encoder, as a 500. It is refused
here, in any field and at any depth (including call `args` and field names).
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        where = first_unencodable(data)
        if where is not None:
            raise ValueError(f"{where}: text must be valid Unicode (no lone surrogate)")
        return data


def first_unencodable(value: object) -> str | None:
    """Where in a JSON-like value a string (or field name) cannot be encoded as UTF-8, as a
    path like `args[2].name`; None if nowhere. Iterative: the depth of a body is no limit.

    Each path is spelled only once one is found: spelled for every element, a 4 MiB batch of
    ABI integer arrays (2 million elements) took 1.5 s per pass, twice (the batch, then each
    item's model), on the event loop, where nothing else was answered; the search alone takes
    less time than parsing the JSON did."""
    if not _any_unencodable(value):
        return None
    return _where_unencodable(value)


def _any_unencodable(value: object) -> bool:
    stack: list[object] = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        if type(item) is int:  # most elements of large bodies: ABI arguments
            continue
        if isinstance(item, str):
            if not _encodable(item):
                return True
        elif isinstance(item, dict):
            if not all(_encodable(key) for key in item if isinstance(key, str)):
                return True
            extend(item.values())
        elif isinstance(item, list | tuple):
            extend(item)
    return False


def _where_unencodable(value: object) -> str | None:
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if not _encodable(item):
                return where or "the body"
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and not _encodable(key):
                    return f"a field name in {where or 'the body'}"
                stack.append((f"{where}.{key}" if where else str(key), child))
        elif isinstance(item, list | tuple):
            stack.extend((f"{where}[{index}]", child) for index, child in enumerate(item))
    return None


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True

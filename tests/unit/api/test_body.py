"""The declared Content-Length check: a number past the limit is 413, anything unreadable is
left to the HTTP server's parser (never a 500 here)."""

import pytest
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from chainflow.api.body import check_declared_length


@pytest.mark.parametrize("declared", ["11", "0011", "9" * 40])
def test_a_declared_length_past_the_limit_is_413(declared: str) -> None:
    with pytest.raises(HTTPException) as refused:
        check_declared_length(Headers({"content-length": declared}), 10)
    assert refused.value.status_code == 413


# "²" (a latin-1 header byte): isdigit() True and int() raised ValueError, a 500.
@pytest.mark.parametrize("declared", ["10", "", "\u00b2", "1_000", " 5"])
def test_anything_else_passes(declared: str) -> None:
    check_declared_length(Headers({"content-length": declared}), 10)

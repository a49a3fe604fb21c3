"""Bind parameters that keep the number of distinct SQL texts small."""

from collections.abc import Collection
from typing import TypeVar

T = TypeVar("T")


def in_list(values: Collection[T]) -> list[T]:
    """`values` for an IN (...) clause, padded to the next power of two by repeating one.

    Each length of an IN list is its own SQL text, so its own prepared statement: batches of
    1 to 64 ids would be 64 statements per pooled connection, more than the driver's cache
    holds, and every miss costs a prepare round trip. Repeating a value does not change what
    IN matches, and leaves 7 lengths from 1 to 64.
    """
    padded = list(values)
    if padded:
        size = 1 << (len(padded) - 1).bit_length()
        padded += [padded[-1]] * (size - len(padded))
    return padded

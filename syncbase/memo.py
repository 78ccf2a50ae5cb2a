"""Bounded per-process memos: what a process keeps of its own recent answers
to save work, never for correctness (another process may hold another
memo, or none).

Forgotten all at once when full rather than least-recently-used first: the
memos hold what the next request will most likely ask again (a user's
channels, the cursor it was just handed), refilled within a few requests,
and a plain dict costs nothing to look up on the pull's path."""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(memo: dict[K, V], key: K, value: V, most: int) -> None:
    """`memo[key] = value`, first emptying `memo` if it holds `most` entries
    and `key` is not one of them."""
    if len(memo) >= most and key not in memo:
        memo.clear()
    memo[key] = value

"""Pull cursors: opaque to clients, signed so that the server can tell its own.

Feed positions are `(tx, seq)` pairs (see `sync.engine.feed`). A cursor holds:
  s   the feed position: every change in the caller's channels at or before s
      has been delivered (for the models filter `m`)
  g   the last grant event of the caller that this cursor has taken into account
  b   pending backfills: [channel, upto, pos], delivering that channel's
      changes after pos and at or before upto (None: as far as the feed goes)
      before the main feed continues
  i   during an initial sync, the feed position when it started (deletes
      older than that cannot concern the client, so they are skipped)
  m   the sorted models filter it was issued for, or None for all models
  r   the estimate of rows still to come, counted once and carried along
  u   the user it was issued to (another account's cursor is refused)
  t   when the client was last up to date through it (unix seconds), for the
      retention window
  a   issued for a scope over every object (an unrestricted service account)
  f   not bound to a models filter yet: a push's cursor for a device that has
      never pulled; its first pull binds it to that pull's filter
  v   the schema version of each model the device's data was fetched at
      (1 left out; 0: a model its app does not know), or None in a cursor
      from before versions were kept (sync.engine.versions)
  e   the newest targeted re-sync (sync.models.Resync) it has taken into
      account, or None likewise

Cursors issued before positions were pairs hold plain sequence numbers; they
read as `(0, seq)`, which is exactly where those rows still are.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from django.core import signing
from django.core.signals import setting_changed
from django.dispatch import receiver

from sync.engine.feed import ORIGIN, Position
from syncbase import memo

_SALT = "sync.engine.cursor.v1"

Backfill = tuple[str, Position | None, Position]


@dataclass(frozen=True)
class Cursor:
    s: Position = ORIGIN
    g: int = 0
    b: tuple[Backfill, ...] = ()
    i: Position | None = None
    m: tuple[str, ...] | None = None
    r: int | None = None
    u: int = 0
    t: int = field(default_factory=lambda: int(time.time()))
    a: bool = False
    f: bool = False
    v: tuple[tuple[str, int], ...] | None = None
    e: int | None = None

    def encode(self) -> str:
        payload = {
            "s": list(self.s),
            "g": self.g,
            "b": [[c, list(u) if u is not None else None, list(p)] for c, u, p in self.b],
            "i": list(self.i) if self.i is not None else None,
            "m": list(self.m) if self.m is not None else None,
            "r": self.r,
            "u": self.u,
            "t": self.t,
            "a": self.a,
            "f": self.f,
            "v": dict(self.v) if self.v is not None else None,
            "e": self.e,
        }
        text = signing.dumps(payload, salt=_SALT, compress=True)
        _remember(text, self)
        return text

    def evolve(self, **changes: Any) -> Cursor:
        return replace(self, **changes)

    def stamped(self) -> Cursor:
        """The same position, marked as issued now."""
        return replace(self, t=int(time.time()))


class BadCursor(Exception):
    pass


def _position(value: Any) -> Position:
    if isinstance(value, list):
        tx, seq = value
        return (int(tx), int(seq))
    return (0, int(value))  # a cursor from before positions were pairs


def _backfill(entry: Any) -> Backfill:
    channel, upto, pos = entry
    # Old cursors said "unbounded" with -1.
    bound = None if upto is None or upto == -1 else _position(upto)
    return (str(channel), bound, _position(pos))


# Cursors this process issued or read, by their text. A pull reads its cursor,
# and recording where it left the device (devices.services.device_seen)
# compares the filter of the device's stored cursor with the new one's: three
# signature checks, decompressions and JSON parses per pull (40 us each),
# nearly always of texts this process has seen moments before. A cursor's
# text fixes its contents, so the cache can be stale only if the signing keys
# change, which happens with a restart (and in tests, which clear it).
DECODED_MAX = 4096
_DECODED: dict[str, Cursor] = {}


def _remember(text: str, cursor: Cursor) -> None:
    memo.remember(_DECODED, text, cursor, DECODED_MAX)


@receiver(setting_changed)
def _forget_on_new_keys(*, setting: str, **kwargs: Any) -> None:
    if setting in {"SECRET_KEY", "SECRET_KEY_FALLBACKS"}:
        _DECODED.clear()


def _versions(value: Any) -> tuple[tuple[str, int], ...] | None:
    if value is None:
        return None
    return tuple(sorted((str(label), int(version)) for label, version in value.items()))


def versions(mapping: dict[str, int]) -> tuple[tuple[str, int], ...]:
    """`Cursor.v` for these versions (hashable, in one order)."""
    return tuple(sorted(mapping.items()))


def decode(token: str) -> Cursor:
    known = _DECODED.get(token)
    if known is not None:
        return known
    cursor = _decode(token)
    _remember(token, cursor)
    return cursor


def _decode(token: str) -> Cursor:
    try:
        payload = signing.loads(token, salt=_SALT)
        return Cursor(
            s=_position(payload["s"]),
            g=int(payload["g"]),
            b=tuple(_backfill(entry) for entry in payload["b"]),
            i=None if payload["i"] is None else _position(payload["i"]),
            m=None if payload["m"] is None else tuple(payload["m"]),
            r=None if payload.get("r") is None else int(payload["r"]),
            u=int(payload["u"]),
            t=int(payload["t"]),
            a=bool(payload.get("a", False)),
            f=bool(payload.get("f", False)),
            v=_versions(payload.get("v")),
            e=None if payload.get("e") is None else int(payload["e"]),
        )
    except (
        signing.BadSignature,
        KeyError,
        TypeError,
        ValueError,
        OverflowError,
        AttributeError,
    ) as exc:
        raise BadCursor(str(exc)) from exc

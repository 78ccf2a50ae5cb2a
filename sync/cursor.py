"""Pull cursors: opaque to clients, signed so that the server can tell its own.

A cursor holds:
  s   the feed position: every change in the caller's channels with seq <= s
      has been delivered (for the models filter `m`)
  g   the last grant event of the caller that this cursor has taken into account
  b   pending backfills: [channel, upto, pos], delivering that channel's
      changes with pos < seq <= upto before the main feed continues
  i   during an initial sync, the feed head when it started (deletes older than
      that cannot concern the client, so they are skipped)
  m   the sorted models filter it was issued for, or None for all models
  r   the estimate of rows still to come, counted once and carried along
  u   the user it was issued to (another account's cursor is refused)
  t   when the client was last up to date through it (unix seconds), for the
      retention window
  a   issued for a scope over every object (an unrestricted service account)
  f   not bound to a models filter yet: a push's cursor for a device that has
      never pulled; its first pull binds it to that pull's filter
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from django.core import signing

_SALT = "sync.cursor.v1"


@dataclass(frozen=True)
class Cursor:
    s: int = 0
    g: int = 0
    b: tuple[tuple[str, int, int], ...] = ()
    i: int | None = None
    m: tuple[str, ...] | None = None
    r: int | None = None
    u: int = 0
    t: int = field(default_factory=lambda: int(time.time()))
    a: bool = False
    f: bool = False

    def encode(self) -> str:
        payload = {
            "s": self.s,
            "g": self.g,
            "b": [list(x) for x in self.b],
            "i": self.i,
            "m": list(self.m) if self.m is not None else None,
            "r": self.r,
            "u": self.u,
            "t": self.t,
            "a": self.a,
            "f": self.f,
        }
        return signing.dumps(payload, salt=_SALT, compress=True)

    def evolve(self, **changes: Any) -> Cursor:
        return replace(self, **changes)

    def stamped(self) -> Cursor:
        """The same position, marked as issued now."""
        return replace(self, t=int(time.time()))


class BadCursor(Exception):
    pass


def decode(token: str) -> Cursor:
    try:
        payload = signing.loads(token, salt=_SALT)
        return Cursor(
            s=int(payload["s"]),
            g=int(payload["g"]),
            b=tuple((str(c), int(u), int(p)) for c, u, p in payload["b"]),
            i=None if payload["i"] is None else int(payload["i"]),
            m=None if payload["m"] is None else tuple(payload["m"]),
            r=None if payload.get("r") is None else int(payload["r"]),
            u=int(payload["u"]),
            t=int(payload["t"]),
            a=bool(payload.get("a", False)),
            f=bool(payload.get("f", False)),
        )
    except (signing.BadSignature, KeyError, TypeError, ValueError, OverflowError) as exc:
        raise BadCursor(str(exc)) from exc

"""What compressing a pull page costs and saves, per codec and level
(`make bench` runs it; the defaults in config/settings.py come from it).

A page of 1,000 objects shaped like the demo's (customers, work orders and
notes, as pull renders them) is compressed at each level; the table gives the
bytes per object and the CPU time per page, best of several runs.
"""

from __future__ import annotations

import gzip
import json
import random
import sys
import time
import uuid
from pathlib import Path

import brotli
import orjson
import zstandard

ROOT = Path(__file__).resolve().parent.parent


def stamp(rng: random.Random) -> str:
    minute, second, micro = rng.randint(0, 59), rng.randint(0, 59), rng.randint(0, 999999)
    return f"2026-11-26T14:{minute:02d}:{second:02d}.{micro:06d}Z"


def page(n: int = 1000, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    streets = ["Main Street", "Elm Road", "Harbour Way", "Mill Lane", "Station Road"]
    changes = []
    for i in range(n):
        kind = i % 3
        data: dict
        if kind == 0:
            data = {
                "name": f"Customer {rng.randint(1, 99999)}",
                "email": f"contact{rng.randint(1, 9999)}@example.com",
                "phone": f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
                "address": f"{rng.randint(1, 200)} {rng.choice(streets)}, Springfield",
                "team": str(uuid.UUID(int=rng.getrandbits(128))),
            }
            model = "fieldwork.customer"
        elif kind == 1:
            data = {
                "customer": str(uuid.UUID(int=rng.getrandbits(128))),
                "title": rng.choice(["Service visit", "Fix boiler", "Annual check", "Repair"]),
                "description": "",
                "status": rng.choice(["open", "scheduled", "done"]),
                "priority": "normal",
                "scheduled_for": "2026-12-01",
                "due_at": None,
                "estimated_hours": 1.5,
                "follow_up_of": None,
                "team": None,
            }
            model = "fieldwork.workorder"
        else:
            data = {
                "work_order": str(uuid.UUID(int=rng.getrandbits(128))),
                "body": rng.choice(["Gate code 1234.", "Dog on site.", "Call before arriving."]),
                "pinned": False,
                "team": None,
            }
            model = "fieldwork.note"
        data.update(owner=rng.randint(1, 1000), created_at=stamp(rng), updated_at=stamp(rng))
        changes.append(
            {
                "model": model,
                "id": str(uuid.UUID(int=rng.getrandbits(128))),
                "op": "upsert",
                "version": rng.randint(1, 5),
                "data": data,
            }
        )
    return orjson.dumps(
        {"changes": changes, "cursor": "x" * 120, "has_more": True, "remaining": 99000}
    )


def timed(fn, raw: bytes, runs: int = 7) -> tuple[int, float]:
    best = float("inf")
    size = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        size = len(fn(raw))
        best = min(best, time.perf_counter() - t0)
    return size, best


def main() -> None:
    raw = page()
    n = 1000
    codecs = [("identity", 0, lambda b: b)]
    codecs += [
        ("gzip", lvl, lambda b, lvl=lvl: gzip.compress(b, compresslevel=lvl, mtime=0))
        for lvl in (1, 3, 5, 6, 9)
    ]
    codecs += [
        ("zstd", lvl, lambda b, lvl=lvl: zstandard.ZstdCompressor(level=lvl).compress(b))
        for lvl in (1, 3, 6, 10)
    ]
    codecs += [
        ("br", lvl, lambda b, lvl=lvl: brotli.compress(b, quality=lvl)) for lvl in (1, 3, 4, 6)
    ]
    rows = []
    print(f"page of {n} objects, {len(raw):,} bytes ({len(raw) / n:.0f} bytes/object)")
    print(f"{'codec':<8}{'level':>6}{'bytes/object':>14}{'ratio':>8}{'ms/page':>10}{'MB/s':>8}")
    for name, level, fn in codecs:
        size, seconds = timed(fn, raw)
        rows.append(
            {
                "codec": name,
                "level": level,
                "bytes_per_object": round(size / n, 1),
                "ratio": round(len(raw) / size, 2),
                "ms_per_page": round(seconds * 1000, 2),
            }
        )
        mbs = len(raw) / seconds / 1e6 if seconds else float("inf")
        print(
            f"{name:<8}{level:>6}{size / n:>14.1f}{len(raw) / size:>8.2f}"
            f"{seconds * 1000:>10.2f}{mbs:>8.0f}"
        )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"compression-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"raw_bytes_per_object": len(raw) / n, "codecs": rows}, indent=2))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()

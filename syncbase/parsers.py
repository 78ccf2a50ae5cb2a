from __future__ import annotations

from typing import Any

import orjson
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class ORJSONParser(JSONParser):
    """DRF's JSON parser, decoded with orjson.

    Besides speed, orjson is strict where the standard library is not: it
    refuses lone surrogates (which cannot be stored or rendered later, so a
    mutation carrying one would fail after it was applied), NaN and Infinity,
    numbers that overflow a double, and nesting deeper than 1,024 levels (which
    makes `json` raise RecursionError). All of these become a 400 here.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context=None) -> Any:  # noqa: ANN001
        if stream is None:
            return None
        try:
            return orjson.loads(stream.read())
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None

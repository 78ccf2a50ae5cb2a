from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
from rest_framework.renderers import JSONRenderer

OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z


def render(data: Any) -> bytes:
    """`data` as a response body carries it (to measure it, or to embed it
    pre-rendered with `orjson.Fragment`)."""
    return orjson.dumps(data, default=_default, option=OPTIONS)


class ORJSONRenderer(JSONRenderer):
    """DRF's JSON renderer, encoded with orjson: a pull page of 1,000 objects is
    the hot path, and orjson serialises it several times faster than `json`."""

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context=None
    ) -> bytes:  # noqa: ANN001
        if data is None:
            return b""
        return render(data)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)  # the wire type of decimals is "number"
    return str(value)

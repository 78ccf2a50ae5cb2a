from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
_django = get_wsgi_application()

_BAD_CHARSET = (
    b'{"code": "bad_request", "detail": "The Content-Type charset is not a text encoding."}'
)


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Django's WSGI app, answering a bad charset with a JSON 400.

    Django builds the request (and decodes the query string with the charset
    the client named, e.g. `charset=rot13`) before any middleware runs, so a
    codec that is not a text encoding escapes as a bare 500 from the server.
    """
    try:
        return _django(environ, start_response)
    except (LookupError, UnicodeError):
        start_response(
            "400 Bad Request",
            [("Content-Type", "application/json"), ("Content-Length", str(len(_BAD_CHARSET)))],
        )
        return [_BAD_CHARSET]

"""gunicorn's own refusals as the API's JSON errors.

gunicorn answers some requests before Django sees them: a request line longer
than `limit_request_line` (4094 bytes; a pull URL with a huge query string),
too many or too large headers, malformed HTTP. It writes those as an HTML page,
so a client that parses every error as `{"code", "detail"}` (docs/protocol.md) got
HTML. gunicorn has no setting for that body; `util.write_error` is the one
function that writes it, and is replaced here in each worker (see
`post_worker_init` in config/gunicorn.conf.py). Statuses and messages stay
gunicorn's.
"""

from __future__ import annotations

import json
import socket

from gunicorn import util

CODES = {
    400: "bad_request",
    403: "permission_denied",
    431: "headers_too_large",
    500: "server_error",
    501: "not_implemented",
}


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    body = json.dumps(
        {"code": CODES.get(status_int, "bad_request"), "detail": mesg or reason}
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


def install() -> None:
    util.write_error = write_json_error

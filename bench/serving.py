"""What the benches' servers run with: production settings, DEBUG off, plain
HTTP on 127.0.0.1, rate limits out of the way, warnings only."""

from __future__ import annotations

import gzip
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import orjson
import urllib3

SERVER_ENV = {
    "DEBUG": "0",
    "SECURE_SSL_REDIRECT": "0",
    "ALLOWED_HOSTS": "127.0.0.1",
    "THROTTLE_USER": "100000000/min",
    "THROTTLE_ANON": "100000000/min",
    "THROTTLE_TOKEN": "100000000/min",
    "LOG_LEVEL": "WARNING",
    "LOG_FORMAT": "plain",
}


def gunicorn(code: Path, port: int, workers: int, env: dict[str, str]) -> subprocess.Popen:
    """gunicorn serving the checkout `code` on 127.0.0.1:`port` with keep-alive,
    with its config file as the README runs it (older checkouts have none),
    once it answers /healthz."""
    command = [str(Path(sys.executable).with_name("gunicorn")), "config.wsgi"]
    if (code / "config" / "gunicorn.conf.py").exists():
        command[1:1] = ["-c", "config/gunicorn.conf.py"]
    command += ["-w", str(workers), "-b", f"127.0.0.1:{port}", "--keep-alive", "30"]
    server = subprocess.Popen([*command, "--log-level", "warning"], cwd=code, env=env)  # noqa: S603
    for _ in range(300):
        try:
            answer = urllib3.request(
                "GET", f"http://127.0.0.1:{port}/healthz", timeout=1, retries=False
            )
            if answer.status == 200:
                return server
        except urllib3.exceptions.HTTPError:
            time.sleep(0.1)
    server.terminate()
    sys.exit(f"the server of {code} did not start")


class Response:
    """What the bench reads of an answer: status, headers, the body as it
    crossed the wire and as the client reads it (gzip undone)."""

    def __init__(self, answer: urllib3.BaseHTTPResponse) -> None:
        self.status_code = answer.status
        self.headers = answer.headers
        self.wire = answer.data
        self.content = (
            gzip.decompress(self.wire)
            if answer.headers.get("Content-Encoding") == "gzip"
            else self.wire
        )

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code}: {self.content[:300]!r}")


class Session:
    """One device's keep-alive connection to the server.

    urllib3 directly (what requests uses underneath): the client shares the
    machine's cores with the server it measures, and requests' own layer
    cost 0.75 ms of the client's CPU per request against 0.37 for urllib3
    (an incremental pull costs the server's worker about 2 ms)."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.headers = headers
        self.base = f"http://127.0.0.1:{port}"
        self.pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1, retries=False)

    def get(self, url: str, params: dict | None = None) -> Response:
        """`url` with or without the server's address."""
        query = f"?{urlencode(params)}" if params else ""
        return self._request("GET", f"{url}{query}")

    def post(self, url: str, data: bytes) -> Response:
        return self._request("POST", url, body=data)

    def _request(self, method: str, url: str, body: bytes | None = None) -> Response:
        path = url.removeprefix(self.base)
        answer = self.pool.request(
            method, path, body=body, headers=self.headers, decode_content=False
        )
        return Response(answer)


def pages(s: Session, limit: int) -> Iterator[tuple[int, float, int]]:
    """An initial sync, one page at a time: every page at `limit` until
    `has_more` is false, each as (objects, seconds it took, bytes that
    crossed the wire)."""
    cursor = None
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        started = time.perf_counter()
        r = s.get("/api/v1/sync/pull/", params=params)
        r.raise_for_status()
        page = orjson.loads(r.content)
        yield len(page["changes"]), time.perf_counter() - started, len(r.wire)
        cursor = page["cursor"]
        if not page["has_more"]:
            return


def pull_all(s: Session, limit: int) -> dict:
    """An initial sync: every page at `limit` until `has_more` is false. The
    objects, the seconds it took, the seconds to the first page and the bytes
    that crossed the wire."""
    count, wire, first = 0, 0, None
    started = time.perf_counter()
    for objects, seconds, size in pages(s, limit):
        if first is None:
            first = seconds
        count += objects
        wire += size
    return {
        "objects": count,
        "seconds": time.perf_counter() - started,
        "first_page_s": first,
        "wire_bytes": wire,
    }

"""What the benches' servers run with: production settings, DEBUG off, plain
HTTP on 127.0.0.1, rate limits out of the way, warnings only."""

from __future__ import annotations

import atexit
import gzip
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import orjson
import pycurl
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


def save(name: str, result: dict) -> Path:
    """Write a bench's result as bench/results/`name`.json and print it."""
    out = Path(__file__).resolve().parent / "results" / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    out.write_text(text + "\n")
    print(text)
    return out


def gunicorn(code: Path, port: int, workers: int, env: dict[str, str]) -> subprocess.Popen:
    """gunicorn serving the checkout `code` on 127.0.0.1:`port` with keep-alive,
    with its config file and the metrics of all workers in a directory, as
    the README runs it in production (older checkouts have no config file),
    once it answers /healthz."""
    if "PROMETHEUS_MULTIPROC_DIR" not in env:
        # Each worker's metrics in shared files: 0.06-0.09 ms more of a
        # worker's CPU per request than in its own memory.
        metrics = tempfile.mkdtemp(prefix="bench-metrics-")
        atexit.register(shutil.rmtree, metrics, ignore_errors=True)
        env = {**env, "PROMETHEUS_MULTIPROC_DIR": metrics}
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

    def __init__(self, status: int, headers: dict[str, str], wire: bytes) -> None:
        self.status_code = status
        self.headers = headers
        self.wire = wire
        self.content = gzip.decompress(wire) if headers.get("content-encoding") == "gzip" else wire

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code}: {self.content[:300]!r}")


class Session:
    """One device's connection to the server, kept alive where the server
    keeps it (gunicorn's sync worker closes it after each answer).

    On libcurl (pycurl): the client shares the machine's two cores with the
    server it measures, so the less CPU it takes, the more of what is
    measured is the server. Per request to a small endpoint: requests 0.75 ms
    of the client's CPU, urllib3 0.37-0.40, libcurl 0.11; with urllib3 the
    worker also spent 0.1 ms more per request (0.79-0.82 ms against
    0.68-0.70 for the same 404). One session is used by one thread at a time."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.headers = headers  # may change between requests (against.py logs in)
        self.base = f"http://127.0.0.1:{port}"
        self.curl = pycurl.Curl()
        self.curl.setopt(pycurl.NOSIGNAL, 1)
        self.curl.setopt(pycurl.TIMEOUT, 600)
        self.curl.setopt(pycurl.HEADERFUNCTION, self._header)
        self._body: list[bytes] = []
        self._headers: dict[str, str] = {}
        self.curl.setopt(pycurl.WRITEFUNCTION, self._body.append)

    def get(self, url: str, params: dict | None = None) -> Response:
        """`url` with or without the server's address."""
        query = f"?{urlencode(params)}" if params else ""
        return self._request(f"{url}{query}")

    def post(self, url: str, data: bytes) -> Response:
        return self._request(url, body=data)

    def _header(self, line: bytes) -> None:
        name, colon, value = line.decode("latin-1").partition(":")
        if colon:
            self._headers[name.strip().lower()] = value.strip()

    def _request(self, url: str, body: bytes | None = None) -> Response:
        c = self.curl
        c.setopt(pycurl.URL, url if url.startswith("http") else f"{self.base}{url}")
        # No "Expect: 100-continue" (libcurl's default for larger bodies): one
        # more round trip per push that no device would make.
        c.setopt(pycurl.HTTPHEADER, [f"{k}: {v}" for k, v in self.headers.items()] + ["Expect:"])
        if body is None:
            c.setopt(pycurl.HTTPGET, 1)
        else:
            c.setopt(pycurl.POSTFIELDS, body)
        self._body.clear()
        self._headers = {}
        c.perform()
        return Response(c.getinfo(pycurl.RESPONSE_CODE), self._headers, b"".join(self._body))


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

"""Serves the technician web app (webapp/, built into webapp/dist/) at /app/.

The files are read from `settings.WEBAPP_DIST` (default: webapp/dist beside
the project) on each request: a handful of small files, each with the right
content type. Nothing is cached by the browser's HTTP cache (`no-cache`: it
revalidates): the service worker (sw.js, scope /app/) keeps the app shell for
offline use and is replaced whole by each build. Until `npm run build` has run
in webapp/, /app/ answers 503 saying so.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from devices.webpush import public_key
from sync.engine.blobstore import store

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".map": "application/json",
}


def dist_dir() -> Path:
    configured = getattr(settings, "WEBAPP_DIST", None)
    return Path(configured) if configured else Path(settings.BASE_DIR) / "webapp" / "dist"


def _serve(name: str) -> HttpResponse:
    root = dist_dir().resolve()
    if not (root / "index.html").is_file():
        return HttpResponse(
            "The web app is not built: run `npm ci && npm run build` in webapp/.\n",
            status=503,
            content_type="text/plain; charset=utf-8",
        )
    path = (root / name).resolve()
    content_type = CONTENT_TYPES.get(path.suffix)
    if content_type is None or not path.is_relative_to(root) or not path.is_file():
        raise Http404("No such file in the web app.")
    body = path.read_bytes()
    if name == "index.html":
        body = _with_push_key(body)
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-cache"
    response["X-Content-Type-Options"] = "nosniff"
    if name == "sw.js":
        # Its scope is the folder it is served from (/app/); said explicitly.
        response["Service-Worker-Allowed"] = "/app/"
    if name == "index.html":
        # The app talks to this origin only; no inline script or style.
        # Files go to and come from the blob storage's links: on S3, its origin.
        storage = " ".join(["'self'", *store().origins()])
        response["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
            f"connect-src {storage}; worker-src 'self'; manifest-src 'self'; "
            "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
        )
    return response


PUSH_KEY_META = b'<meta name="push-public-key" content="" />'


def _with_push_key(html: bytes) -> bytes:
    """The page learns the server's VAPID public key from its meta tag
    (webapp/src/push.ts); empty when the server sends no Web Push."""
    key = public_key()
    if key is None:
        return html
    return html.replace(PUSH_KEY_META, f'<meta name="push-public-key" content="{key}" />'.encode())


@require_safe
def index(request: HttpRequest) -> HttpResponse:
    return _serve("index.html")


@require_safe
def asset(request: HttpRequest, name: str) -> HttpResponse:
    return _serve(name)

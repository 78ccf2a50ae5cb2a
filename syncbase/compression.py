"""Compressed bodies both ways (docs/protocol.md, "Compression").

Responses: zstd, brotli or gzip, whichever the client accepts, in that order
of preference, at levels chosen from `bench/compression.py` (a 1,000-object
pull page: zstd 1 shrinks it 5.3x in 0.5 ms, brotli 1 4.6x in 0.9 ms, gzip 3
4.2x in 2.6 ms; gzip 6, Django's fixed level, only reaches 4.6x for twice
gzip 3's time). Written here rather than with Django's GZipMiddleware or
django-compression-middleware because both fix their levels in code, and the
level is exactly what those numbers choose.

Requests: a body sent with `Content-Encoding: gzip` (or zstd) is
decompressed before the API parses it, refusing a body that is not valid
(400) or that would grow past DATA_UPLOAD_MAX_MEMORY_SIZE (413): the limit
applies to what the server holds, not to what crossed the wire.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable

import brotli
import zstandard
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import patch_vary_headers

from syncbase.conf import sync_settings
from syncbase.middleware import SyncAndAsyncMiddleware

# Below this a response is sent as it is: it fits in a packet anyway.
MIN_SIZE = 512
# Compressing must save at least this much to be worth a Content-Encoding.
MIN_SAVING = 64


def _gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(sync_settings.COMPRESSION_GZIP_LEVEL, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=sync_settings.COMPRESSION_ZSTD_LEVEL).compress(data)


def _br(data: bytes) -> bytes:
    return bytes(brotli.compress(data, quality=sync_settings.COMPRESSION_BROTLI_LEVEL))


ENCODERS: dict[str, Callable[[bytes], bytes]] = {"zstd": _zstd, "br": _br, "gzip": _gzip}


def accepted(header: str) -> list[str]:
    """The encodings an Accept-Encoding header allows (q=0 means no)."""
    names = []
    for part in header[:256].split(","):
        name, _, params = part.strip().partition(";")
        q = params.strip().removeprefix("q=")
        if params and q.replace(".", "", 1).isdigit() and float(q) == 0:
            continue
        if name:
            names.append(name.strip().lower())
    return names


def choose(header: str) -> str | None:
    names = set(accepted(header))
    for encoding in ENCODERS:
        if encoding in names or "*" in names:
            return encoding
    return None


class ResponseCompressionMiddleware(SyncAndAsyncMiddleware):
    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if response.streaming or response.has_header("Content-Encoding"):
            return response
        patch_vary_headers(response, ("Accept-Encoding",))
        if len(response.content) < MIN_SIZE:
            return response
        encoding = choose(request.META.get("HTTP_ACCEPT_ENCODING", ""))
        if encoding is None:
            return response
        compressed = ENCODERS[encoding](response.content)
        if len(compressed) + MIN_SAVING > len(response.content):
            return response
        response.content = compressed
        response["Content-Length"] = str(len(compressed))
        response["Content-Encoding"] = encoding
        etag = response.get("ETag")
        if etag and etag.startswith('"'):
            # The same resource in another encoding: a weak tag (as Django's
            # GZipMiddleware does), so caches do not mix the bytes up.
            response["ETag"] = "W/" + etag
        return response


class RequestDecompressionMiddleware(SyncAndAsyncMiddleware):
    def before(self, request: HttpRequest) -> HttpResponse | None:
        encoding = request.META.get("HTTP_CONTENT_ENCODING", "").strip().lower()
        if encoding and encoding != "identity":
            return self._decompress(request, encoding)
        return None

    def _decompress(self, request: HttpRequest, encoding: str) -> HttpResponse | None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            raw = request.body  # bounded by the same limit, compressed
            if encoding == "gzip":
                inflater = zlib.decompressobj(47)  # a gzip (or zlib) stream
                data = inflater.decompress(raw, limit + 1)
                if len(data) > limit or inflater.unconsumed_tail:
                    return _refuse(413, "payload_too_large", limit)
                if not inflater.eof:
                    raise ValueError("truncated")
            elif encoding == "zstd":
                reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw))
                data = reader.read(limit + 1)
            else:
                # Not br: its Python binding cannot bound what it inflates.
                return JsonResponse(
                    {
                        "code": "unsupported_encoding",
                        "detail": f"Content-Encoding {encoding!r} is not supported for "
                        "request bodies; send gzip, zstd or identity.",
                    },
                    status=415,
                )
        except (zlib.error, zstandard.ZstdError, ValueError, EOFError):
            return JsonResponse(
                {"code": "bad_encoding", "detail": f"The body is not valid {encoding}."},
                status=400,
            )
        if len(data) > limit:
            return _refuse(413, "payload_too_large", limit)
        request._body = data
        request._stream = io.BytesIO(data)
        request.META["CONTENT_LENGTH"] = str(len(data))
        del request.META["HTTP_CONTENT_ENCODING"]
        return None


def _refuse(status: int, code: str, limit: int) -> JsonResponse:
    return JsonResponse(
        {"code": code, "detail": f"The request body is larger than {limit} bytes uncompressed."},
        status=status,
    )

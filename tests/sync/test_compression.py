"""Compressed responses and request bodies (docs/protocol.md, "Compression")."""

from __future__ import annotations

import gzip
import time
import zlib

import brotli
import orjson
import pytest
import zstandard

from tests.factories import customer
from tests.helpers import same_page

pytestmark = pytest.mark.django_db

PULL = "/api/v1/sync/pull/"
PUSH = "/api/v1/sync/push/"


@pytest.fixture
def many(alice):
    alice.push(
        *[customer(f"Customer {i}", address=f"{i} Main Street, Springfield") for i in range(50)]
    )
    return alice


@pytest.mark.parametrize(
    ("accept", "encoding", "decode"),
    [
        ("gzip", "gzip", gzip.decompress),
        ("gzip, deflate, br", "br", brotli.decompress),
        ("gzip, zstd", "zstd", lambda b: zstandard.ZstdDecompressor().decompress(b)),
        ("br;q=0, gzip", "gzip", gzip.decompress),
    ],
)
def test_responses_are_compressed_as_the_client_accepts(
    many, accept, encoding, decode, monkeypatch
):
    plain = many.client.get(PULL)
    # The second request falls in a later second, as it sometimes does in CI.
    later = time.time() + 1.5
    monkeypatch.setattr(time, "time", lambda: later)
    packed = many.client.get(PULL, HTTP_ACCEPT_ENCODING=accept)
    assert packed["Content-Encoding"] == encoding
    assert "Accept-Encoding" in packed["Vary"]
    assert same_page(orjson.loads(decode(packed.content)), plain.json())
    assert len(packed.content) * 3 < len(plain.content)  # at least 3x smaller


def test_no_accept_encoding_no_compression(many):
    response = many.client.get(PULL)
    assert not response.has_header("Content-Encoding")
    response = many.client.get(PULL, HTTP_ACCEPT_ENCODING="identity")
    assert not response.has_header("Content-Encoding")


def test_small_responses_are_sent_as_they_are(alice):
    response = alice.client.get("/api/v1/devices/", HTTP_ACCEPT_ENCODING="gzip")
    assert not response.has_header("Content-Encoding")


def push_raw(actor, body: bytes, encoding: str):
    return actor.client.generic(
        "POST", PUSH, body, content_type="application/json", HTTP_CONTENT_ENCODING=encoding
    )


def test_a_gzip_request_body_is_accepted(alice):
    body = orjson.dumps({"mutations": [customer("Zipped")]})
    response = push_raw(alice, gzip.compress(body), "gzip")
    assert response.status_code == 200, response.content
    assert response.json()["results"][0]["status"] == "applied"
    zstd_body = zstandard.ZstdCompressor().compress(orjson.dumps({"mutations": [customer("Z")]}))
    assert push_raw(alice, zstd_body, "zstd").status_code == 200


def test_a_bad_or_oversized_compressed_body_is_refused(alice, settings):
    response = push_raw(alice, b"not gzip at all", "gzip")
    assert response.status_code == 400 and response.json()["code"] == "bad_encoding"
    truncated = gzip.compress(b'{"mutations": []}')[:-6]
    assert push_raw(alice, truncated, "gzip").json()["code"] == "bad_encoding"
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    bomb = zlib.compress(b"[" + b" " * 5_000_000 + b"]")  # small on the wire, 5 MB inflated
    bomb_gz = gzip.compress(b"[" + b" " * 5_000_000 + b"]")
    assert len(bomb) < 10_000 and len(bomb_gz) < 10_000
    response = push_raw(alice, bomb_gz, "gzip")
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"
    zbomb = zstandard.ZstdCompressor().compress(b" " * 5_000_000)
    assert push_raw(alice, zbomb, "zstd").status_code == 413
    assert push_raw(alice, brotli.compress(b"{}"), "br").status_code == 415

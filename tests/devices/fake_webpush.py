"""A local push service (RFC 8030) and the browser's side of Web Push, so the
server's sender (devices/webpush.py, pywebpush underneath) runs down to HTTP
with no network.

`FakePushService` accepts POSTs to `/push/<id>` as Chrome's or Firefox's push
service would, answering what a test asks for. `BrowserKeys` is what a
browser holds for one subscription: its P-256 key pair and auth secret. It
decrypts what arrived (RFC 8291, aes128gcm, written here from the RFC with
`cryptography` alone rather than with the http-ece package the sender uses,
so a sender that encrypted wrongly could not pass) and checks the VAPID
signature (RFC 8292) against the server's public key.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


class BrowserKeys:
    """One subscription's keys, as the browser keeps them."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)

    def keys(self) -> dict[str, str]:
        return {"p256dh": b64url(_point(self.private.public_key())), "auth": b64url(self.auth)}

    def decrypt(self, body: bytes) -> bytes:
        """RFC 8291 section 3.4 and RFC 8188: one aes128gcm record."""
        salt, record_size, id_len = body[:16], struct.unpack("!I", body[16:20])[0], body[20]
        sender_public = body[21 : 21 + id_len]
        ciphertext = body[21 + id_len :]
        assert record_size >= len(ciphertext), "a wake-up fits in one record"
        shared = self.private.exchange(
            ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), sender_public)
        )
        key_info = b"WebPush: info\x00" + _point(self.private.public_key()) + sender_public
        ikm = _hkdf(self.auth, shared, key_info, 32)
        cek = _hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
        nonce = _hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
        padded = AESGCM(cek).decrypt(nonce, ciphertext, None)
        # The last record ends with a 0x02 delimiter, then zero padding.
        unpadded = padded.rstrip(b"\x00")
        assert unpadded.endswith(b"\x02"), "the last record's delimiter"
        return unpadded[:-1]


def check_vapid(authorization: str, *, public_key: str, audience: str) -> dict[str, Any]:
    """RFC 8292: `vapid t=<JWT>, k=<key>`, the JWT signed with ES256 by the
    key, for this push service's origin, not expired. Returns the claims."""
    scheme, _, params = authorization.partition(" ")
    assert scheme.lower() == "vapid", authorization
    parts = dict(p.strip().split("=", 1) for p in params.split(","))
    assert parts["k"] == public_key, "signed with the key browsers subscribed with"
    head, claims, signature = parts["t"].split(".")
    assert json.loads(unb64url(head)) == {"typ": "JWT", "alg": "ES256"}
    raw = unb64url(signature)
    verifier = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(parts["k"]))
    try:
        verifier.verify(
            encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
            f"{head}.{claims}".encode(),
            ec.ECDSA(hashes.SHA256()),
        )
    except InvalidSignature:
        raise AssertionError("the VAPID signature does not verify") from None
    body: dict[str, Any] = json.loads(unb64url(claims))
    assert body["aud"] == audience
    assert time.time() < body["exp"] <= time.time() + 24 * 3600, "RFC 8292: at most 24 hours"
    assert body["sub"].startswith(("mailto:", "https:"))
    return body


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    status: int


@dataclass
class FakePushService:
    """Answers 201 unless told otherwise (`answer`), and keeps what came."""

    received: list[Received] = field(default_factory=list)
    _answers: dict[str, deque[tuple[int, dict[str, str]]]] = field(
        default_factory=lambda: defaultdict(deque)
    )
    on_push: Callable[[Received], None] | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with service._lock:
                    queue = service._answers.get(self.path)
                    status, headers = queue.popleft() if queue else (201, {})
                    got = Received(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body, status
                    )
                    service.received.append(got)
                    service._arrived.notify_all()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if status == 201 and service.on_push is not None:
                    service.on_push(got)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def subscription(self, name: str) -> tuple[dict[str, Any], BrowserKeys]:
        """A subscription as a browser's PushSubscription.toJSON() gives it."""
        keys = BrowserKeys()
        sub = {"endpoint": f"{self.url}/push/{name}", "expirationTime": None, "keys": keys.keys()}
        return sub, keys

    def answer(self, name: str, *responses: tuple[int, dict[str, str]]) -> None:
        with self._lock:
            self._answers[f"/push/{name}"].extend(responses)

    def to(self, name: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == f"/push/{name}"]

    def wait_for(self, name: str, count: int = 1, timeout: float = 10) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len([r for r in self.received if r.path == f"/push/{name}"]) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"no push to {name} within {timeout} s: {self.received}"
                self._arrived.wait(left)
            return [r for r in self.received if r.path == f"/push/{name}"]


def running() -> Iterator[FakePushService]:
    service = FakePushService()
    try:
        yield service
    finally:
        service.stop()


def vapid_key_pair() -> tuple[str, str]:
    """A server key as `vapid --gen` makes one (PEM), and its public key."""
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return pem, b64url(_point(private.public_key()))

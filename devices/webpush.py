"""Web Push (RFC 8030, 8291, 8292) for browsers that registered a push
subscription rather than an FCM registration token.

A browser subscribes with the server's VAPID public key
(`pushManager.subscribe({applicationServerKey})`) and registers the
subscription's JSON (`{"endpoint", "keys": {"p256dh", "auth"}}`) as its
device's `push_token`. The server then sends each wake-up straight to the
browser's push service (Chrome's, Firefox's, Safari's, Edge's): the payload
encrypted for that browser (aes128gcm), signed with the VAPID key. No
Firebase project is needed for web devices.

Encryption and signing are pywebpush's (Mozilla's, with py-vapid and
http-ece); this module only checks subscriptions at registration, picks the
key from the settings and sorts the push services' answers:

- 201 (or any 2xx): sent;
- 404, 410: the subscription is gone for good (unsubscribed, expired);
- 429, 5xx, a timeout or a refused connection: try again later, honouring
  `Retry-After`;
- anything else (400, 401/403: our key or claims, 413): logged, failed.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from devices.sending import COLLAPSE_KEY, SendReport, Target, retry_after_seconds
from syncbase.conf import sync_settings
from syncbase.errors import SyncError

logger = logging.getLogger(__name__)

# Sends in flight at once for one wake-up (each is one HTTPS request).
PARALLEL = 8
TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Subscription:
    endpoint: str
    p256dh: str
    auth: str

    def token(self) -> str:
        """The form stored as the device's push_token (compact, keys sorted)."""
        return json.dumps(
            {"endpoint": self.endpoint, "keys": {"auth": self.auth, "p256dh": self.p256dh}},
            separators=(",", ":"),
            sort_keys=True,
        )

    def info(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


def is_subscription(token: str) -> bool:
    """A push_token holding a Web Push subscription (FCM tokens are never JSON)."""
    return token.lstrip().startswith("{")


def _b64url(value: Any, *, field: str, size: int) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(f"keys.{field} must be a URL-safe base64 string.")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise _bad(f"keys.{field} is not URL-safe base64.") from None
    if len(raw) != size or (field == "p256dh" and raw[0] != 4):
        what = "an uncompressed P-256 point (65 bytes)" if field == "p256dh" else f"{size} bytes"
        raise _bad(f"keys.{field} must be {what}, as the browser's PushSubscription gives it.")
    return value.rstrip("=")


def _bad(detail: str) -> SyncError:
    return SyncError(
        "bad_push_token",
        "push_token looks like a Web Push subscription (JSON) but is not a usable one: " + detail,
    )


def host_allowed(host: str) -> bool:
    """Whether `host` is one of the push services we send to (or under one)."""
    host = host.lower().rstrip(".")
    for allowed in sync_settings.WEBPUSH_ENDPOINT_HOSTS:
        allowed = allowed.lower().lstrip(".")
        if host == allowed or host.endswith("." + allowed):
            return True
    return False


def parse_subscription(token: str) -> Subscription:
    """The subscription a device registers, checked; SyncError(bad_push_token)
    otherwise. The endpoint must be https on a known push service
    (WEBPUSH_ENDPOINT_HOSTS): the server posts to it, so an arbitrary address
    would let any account make the server call into its own network."""
    if not sync_settings.WEBPUSH_VAPID_PRIVATE_KEY:
        raise SyncError(
            "webpush_not_configured",
            "This server sends no Web Push (no VAPID key is configured): register an FCM "
            "registration token as push_token, or none and sync on a timer.",
        )
    try:
        body = json.loads(token)
    except ValueError:
        raise _bad("it is not valid JSON.") from None
    if not isinstance(body, dict):
        raise _bad("it must be a JSON object.")
    endpoint = body.get("endpoint")
    keys = body.get("keys")
    if not isinstance(endpoint, str) or not isinstance(keys, dict):
        raise _bad('it needs "endpoint" and "keys" ({"p256dh", "auth"}).')
    parts = urlsplit(endpoint)
    secure = parts.scheme == "https" or (
        parts.scheme == "http" and sync_settings.WEBPUSH_ALLOW_HTTP
    )
    if not secure or not parts.hostname:
        raise _bad("the endpoint must be an https URL.")
    if parts.username or parts.password:
        raise _bad("the endpoint must not carry credentials.")
    if not host_allowed(parts.hostname):
        raise _bad(
            f"{parts.hostname} is not a push service this server sends to (WEBPUSH_ENDPOINT_HOSTS)."
        )
    return Subscription(
        endpoint=endpoint,
        p256dh=_b64url(keys.get("p256dh"), field="p256dh", size=65),
        auth=_b64url(keys.get("auth"), field="auth", size=16),
    )


def normalized_token(token: str) -> str:
    """What to store for a push_token a device registers: a subscription
    checked and in its compact form; an FCM token as given."""
    if not is_subscription(token):
        return token
    return parse_subscription(token).token()


# --- the key --------------------------------------------------------------------------------


@cache
def _vapid(setting: str) -> Any:
    from py_vapid import Vapid

    text = setting.strip()
    if not text.startswith("-----BEGIN") and "\n" not in text and Path(text).is_file():
        text = Path(text).read_text().strip()
    if text.startswith("-----BEGIN"):
        return Vapid.from_pem(text.encode())
    return Vapid.from_string(text)  # a raw key or DER, URL-safe base64


def vapid() -> Any:
    """The server's VAPID key (py_vapid), or None when Web Push is off."""
    setting = sync_settings.WEBPUSH_VAPID_PRIVATE_KEY
    return _vapid(setting) if setting else None


def public_key() -> str | None:
    """The applicationServerKey browsers subscribe with (URL-safe base64 of
    the uncompressed point), or None when Web Push is off."""
    from cryptography.hazmat.primitives import serialization

    key = vapid()
    if key is None:
        return None
    raw = key.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# --- sending --------------------------------------------------------------------------------


class WebPushBackend:
    """Sends to Web Push subscriptions; the same contract as devices.push's backends."""

    name = "webpush"

    def __init__(self) -> None:
        self._local = threading.local()

    def _session(self) -> Any:
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def send(self, targets: Sequence[Target], data: Mapping[str, str]) -> SendReport:
        report = SendReport()
        try:
            key = vapid()
        except Exception:  # an unreadable key: `manage.py check` says so (sync.E006)
            logger.exception("WEBPUSH_VAPID_PRIVATE_KEY cannot be read: nothing sent")
            report.failed += [t.device_id for t in targets]
            return report
        if key is None:
            for target in targets:
                logger.error(
                    "device %s has a Web Push subscription but WEBPUSH_VAPID_PRIVATE_KEY is "
                    "not set: not sent",
                    target.device_id,
                )
            report.failed += [t.device_id for t in targets]
            return report
        payload = json.dumps({k: str(v) for k, v in data.items()}, separators=(",", ":"))
        if len(targets) == 1:
            report.merge(self._one(key, targets[0], payload))
            return report
        with ThreadPoolExecutor(max_workers=min(PARALLEL, len(targets))) as pool:
            for outcome in pool.map(lambda t: self._one(key, t, payload), targets):
                report.merge(outcome)
        return report

    def _one(self, key: Any, target: Target, payload: str) -> SendReport:
        import requests
        from pywebpush import WebPusher, WebPushException

        try:
            subscription = parse_subscription(target.token)
        except SyncError as error:
            # Registered under other settings (a push service since taken off
            # the list): the device must subscribe again.
            logger.warning("device %s: %s", target.device_id, error.detail)
            return SendReport(unregistered=[target.device_id])
        origin = urlsplit(subscription.endpoint)
        claims = {
            "sub": sync_settings.WEBPUSH_VAPID_SUBJECT,
            "aud": f"{origin.scheme}://{origin.netloc}",
            "exp": int(time.time()) + 12 * 3600,
        }
        headers = key.sign(claims)
        headers.update({"Urgency": "high", "Topic": COLLAPSE_KEY})
        try:
            response = WebPusher(subscription.info(), requests_session=self._session()).send(
                payload,
                headers,
                ttl=int(sync_settings.WEBPUSH_TTL_SECONDS),
                timeout=TIMEOUT_SECONDS,
            )
        except (requests.ConnectionError, requests.Timeout) as error:
            logger.warning("Web Push to device %s: %s", target.device_id, error)
            return SendReport(temporary=[target.device_id])
        except WebPushException as error:  # a subscription pywebpush cannot use
            logger.warning("Web Push to device %s: %s", target.device_id, error)
            return SendReport(unregistered=[target.device_id])
        status = response.status_code
        if 200 <= status < 300:
            return SendReport(sent=[target.device_id])
        if status in (404, 410):
            return SendReport(unregistered=[target.device_id])
        if status == 429 or status >= 500:
            return SendReport(
                temporary=[target.device_id],
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        logger.error(
            "the push service refused a message to device %s: %s %s",
            target.device_id,
            status,
            response.text[:300],
        )
        return SendReport(failed=[target.device_id])

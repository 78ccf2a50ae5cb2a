"""Sending wake-up messages to devices: one module, two backends.

`fcm` sends FCM data messages through firebase-admin (`messaging.send_each`,
up to 500 a call, responses matched by index), and Web Push messages to the
browsers that registered a Web Push subscription instead of an FCM token
(devices/webpush.py); `console` only logs what would be sent (the embedded
default, `make run`). A backend sends once and sorts
the outcome per device; retrying the temporary failures, recording the
outcome and counting are the caller's (`sync.notify.tasks`).

The data message is the contract's (docs/protocol.md, "Push notifications"):
`{"type": "sync", "cursor": …}` or `{"type": "conflict_resolved",
"conflict_id": …}`, collapse key `sync`, high priority on Android,
`content-available: 1` for APNs, a Webpush message for web devices.
"""

from __future__ import annotations

import logging
import sys
import threading
import uuid
import warnings
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, Protocol

from devices.sending import COLLAPSE_KEY, SendReport, Target, retry_after_seconds
from syncbase.conf import sync_settings

# Re-exported: what a backend sends to and reports, used by sync.notify.
__all__ = ["COLLAPSE_KEY", "Backend", "SendReport", "Target", "backend"]

logger = logging.getLogger(__name__)

# FCM accepts at most this many messages per send_each call.
CHUNK = 500


class Backend(Protocol):
    name: str

    def send(self, targets: Sequence[Target], data: Mapping[str, str]) -> SendReport: ...


class ConsoleBackend:
    """Logs the wake-ups instead of sending them: the embedded default."""

    name = "console"

    def send(self, targets: Sequence[Target], data: Mapping[str, str]) -> SendReport:
        if targets:
            line = "push (console backend) %s to %d device(s): %s" % (  # noqa: UP031
                dict(data),
                len(targets),
                ", ".join(f"{t.device_id} ({t.platform})" for t in targets),
            )
            if logger.isEnabledFor(logging.INFO) and logger.hasHandlers():
                logger.info(line)
            else:
                # A project that configured no logging for us still sees
                # what would have been sent: that is this backend's point.
                print(line, file=sys.stderr)  # noqa: T201
        return SendReport(sent=[t.device_id for t in targets])


class FcmBackend:
    """FCM HTTP v1 through firebase-admin, with a service-account key file."""

    name = "fcm"

    def __init__(self, *, credentials: str | Mapping[str, Any], endpoint: str) -> None:
        import firebase_admin
        from firebase_admin import credentials as fb_credentials
        from firebase_admin import messaging

        self._messaging = messaging
        # firebase-admin has no setting for the FCM address: its messaging
        # service formats this class attribute once, when an app first sends.
        # Staging and load tests point it at a fake (FCM_ENDPOINT).
        messaging._MessagingService.FCM_URL = (
            endpoint.rstrip("/") + "/v1/projects/{0}/messages:send"
        )
        cert = fb_credentials.Certificate(
            dict(credentials) if isinstance(credentials, Mapping) else credentials
        )
        self.app = firebase_admin.initialize_app(cert, name=f"sync-push-{uuid.uuid4()}")

    def close(self) -> None:
        import firebase_admin

        firebase_admin.delete_app(self.app)

    def message(self, target: Target, data: Mapping[str, str]) -> Any:
        m = self._messaging
        payload = {k: str(v) for k, v in data.items()}
        android = apns = webpush = None
        if target.platform == "android":
            android = m.AndroidConfig(priority="high", collapse_key=COLLAPSE_KEY)
        elif target.platform == "ios":
            # A silent background push: APNs wants priority 5 and push type
            # "background" for content-available messages.
            apns = m.APNSConfig(
                headers={
                    "apns-push-type": "background",
                    "apns-priority": "5",
                    "apns-collapse-id": COLLAPSE_KEY,
                },
                payload=m.APNSPayload(aps=m.Aps(content_available=True)),
            )
        else:
            webpush = m.WebpushConfig(headers={"Urgency": "high", "Topic": COLLAPSE_KEY})
        with warnings.catch_warnings():
            # firebase-admin 7 deprecates `token` in favour of installation ids;
            # apps register FCM registration tokens, which HTTP v1 takes as `token`.
            warnings.simplefilter("ignore", DeprecationWarning)
            return m.Message(
                data=payload, token=target.token, android=android, apns=apns, webpush=webpush
            )

    def send(self, targets: Sequence[Target], data: Mapping[str, str]) -> SendReport:
        report = SendReport()
        for start in range(0, len(targets), CHUNK):
            chunk = list(targets[start : start + CHUNK])
            batch = self._messaging.send_each([self.message(t, data) for t in chunk], app=self.app)
            for target, response in zip(chunk, batch.responses, strict=True):
                report.merge(self._outcome(target, response))
        return report

    def _outcome(self, target: Target, response: Any) -> SendReport:
        from firebase_admin import exceptions, messaging

        if response.success:
            return SendReport(sent=[target.device_id])
        error = response.exception
        if isinstance(error, messaging.UnregisteredError | messaging.SenderIdMismatchError) or (
            isinstance(error, exceptions.InvalidArgumentError) and _about_the_token(error)
        ):
            return SendReport(unregistered=[target.device_id])
        if isinstance(
            error,
            messaging.QuotaExceededError
            | exceptions.UnavailableError
            | exceptions.InternalError
            | exceptions.DeadlineExceededError
            | exceptions.ResourceExhaustedError,
        ):
            return SendReport(temporary=[target.device_id], retry_after=_retry_after(error))
        logger.error("FCM refused a message to device %s: %s", target.device_id, error)
        return SendReport(failed=[target.device_id])


def _about_the_token(error: Exception) -> bool:
    """FCM answers INVALID_ARGUMENT both for a malformed token and for a
    malformed message; only the first is the device's fault."""
    return "registration token" in str(error).lower()


def _retry_after(error: Any) -> float | None:
    response = getattr(error, "http_response", None)
    return retry_after_seconds(
        response.headers.get("Retry-After") if response is not None else None
    )


class NoFcm:
    """PUSH_BACKEND=webpush: browsers only; an FCM token has nowhere to go."""

    name = "webpush"

    def send(self, targets: Sequence[Target], data: Mapping[str, str]) -> SendReport:
        for target in targets:
            logger.error(
                "device %s has an FCM token but PUSH_BACKEND is webpush (no FCM_CREDENTIALS)",
                target.device_id,
            )
        return SendReport(failed=[t.device_id for t in targets])


class Router:
    """Web Push subscriptions to the Web Push sender, every other token to
    the configured backend (FCM, or the console)."""

    def __init__(self, main: Backend, web: Backend) -> None:
        self.main = main
        self.web = web
        self.name = main.name

    def send(self, targets: Sequence[Target], data: Mapping[str, str]) -> SendReport:
        from devices.webpush import is_subscription

        web = [t for t in targets if is_subscription(t.token)]
        report = SendReport()
        if web:
            report.merge(self.web.send(web, data))
        if len(web) < len(targets):
            report.merge(self.main.send([t for t in targets if not is_subscription(t.token)], data))
        return report


_lock = threading.Lock()


@cache
def _configured(name: str, credentials: str, endpoint: str) -> Backend:
    main: Backend
    if name == "fcm":
        main = FcmBackend(credentials=credentials, endpoint=endpoint)
    elif name == "webpush":
        main = NoFcm()
    elif name == "console":
        # Nothing leaves the machine: Web Push subscriptions are logged too.
        return ConsoleBackend()
    else:
        raise ValueError(f"Unknown PUSH_BACKEND {name!r}; use fcm, webpush or console")
    from devices.webpush import WebPushBackend

    return Router(main, WebPushBackend())


def backend() -> Backend:
    """The backend the settings name (one per process, built on first use)."""
    with _lock:
        return _configured(
            sync_settings.PUSH_BACKEND, sync_settings.FCM_CREDENTIALS, sync_settings.FCM_ENDPOINT
        )

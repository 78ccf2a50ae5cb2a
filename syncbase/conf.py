"""Every setting `sync`, `devices` and `syncbase` read, with its default, in
one place (as DRF's `api_settings`): a project sets only what it changes.

    from syncbase.conf import sync_settings
    sync_settings.SYNC_PULL_MAX_LIMIT

Read through Django's settings each time, so `override_settings` and the
test `settings` fixture apply. The README's "Configuration" table says what
each means; the reference project (config/settings.py) reads them from
environment variables.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # The change feed and pushes.
    "SYNC_RETENTION": dt.timedelta(days=30),  # tombstones kept; older cursors get 410
    "SYNC_MUTATION_LOG_RETENTION": dt.timedelta(days=30),  # a retried mutation id is known
    "SYNC_PULL_DEFAULT_LIMIT": 500,
    "SYNC_PULL_MAX_LIMIT": 1000,
    "SYNC_PULL_MAX_BYTES": 4 * 1024 * 1024,  # a pull page stops growing past this
    "SYNC_PUSH_MAX_MUTATIONS": 500,
    "SYNC_MAX_TEXT_CHARS": 10_000,  # text fields without a max_length
    "SYNC_MAX_JSON_BYTES": 64 * 1024,  # JSON fields
    "SYNC_MAX_DEVICES_PER_USER": 50,
    "SYNC_CONFLICTS_LIST_MAX": 1000,
    # Tokens.
    "AUTH_TOKEN_TTL": dt.timedelta(days=90),  # a login token unused this long expires
    "AUTH_TOKENS_PER_USER": 20,
    # Wake-ups.
    "PUSH_BACKEND": "console",  # or "fcm", "webpush" (browsers only)
    "FCM_CREDENTIALS": "",  # a Firebase service-account JSON file
    "FCM_ENDPOINT": "https://fcm.googleapis.com",
    # Web Push to browsers (devices/webpush.py); no key: web devices register
    # FCM tokens or none.
    "WEBPUSH_VAPID_PRIVATE_KEY": "",
    "WEBPUSH_VAPID_SUBJECT": "mailto:admin@localhost",
    "WEBPUSH_TTL_SECONDS": 3600,  # how long a push service keeps a wake-up for an offline browser
    # The push services a subscription may point at (a host or its parent
    # domain): the server posts to the endpoint a device registers.
    "WEBPUSH_ENDPOINT_HOSTS": [
        "fcm.googleapis.com",  # Chrome, Edge on Android, Opera
        "updates.push.services.mozilla.com",  # Firefox
        "push.apple.com",  # Safari (web.push.apple.com)
        "notify.windows.com",  # Edge on Windows (WNS)
    ],
    "WEBPUSH_ALLOW_HTTP": False,  # tests and staging only: an http:// push service
    "PUSH_COALESCE_SECONDS": 10,
    "PUSH_MAX_ATTEMPTS": 5,
    # Files (sync.BlobField, docs/protocol.md "Files").
    "SYNC_BLOB_STORAGE": "sync_blobs",  # the STORAGES alias; absent: files under MEDIA_ROOT/blobs
    "SYNC_BLOB_MAX_BYTES": 50 * 1024 * 1024,  # one file
    "SYNC_BLOB_QUOTA_BYTES": 2 * 1024**3,  # what one user's uploads may hold in all
    "SYNC_BLOB_PART_BYTES": 8 * 1024 * 1024,  # upload part size (S3 needs 5 MiB or more)
    "SYNC_BLOB_CONTENT_TYPES": ["image/*", "application/pdf", "text/plain", "audio/*", "video/*"],
    "SYNC_BLOB_LINK_SECONDS": 300,  # how long a download or upload link works
    "SYNC_BLOB_UPLOAD_HOURS": 24,  # an unfinished upload is aborted after this
    "SYNC_BLOB_GRACE_HOURS": 24,  # an unreferenced file is kept this long before collection
    "SYNC_BLOB_THUMBNAIL_PIXELS": 320,  # the longer side of an image's thumbnail
    # Live pulls (sync/live/).
    "LIVE_PULL_MAX_WAIT": 50,  # seconds; keep under the proxy's read timeout
    "LIVE_PULLS_PER_USER": 10,  # waiting at once, per server process
    "LIVE_PULL_THREADS": 8,  # reading for live pulls under ASGI, per process
    # The DATABASES alias whose connection LISTENs for commits (live pulls,
    # workers): one that reaches PostgreSQL directly, not through PgBouncer
    # in transaction mode.
    "LISTEN_DATABASE": "default",
    # A DATABASES alias (a streaming replica) for pull pages, `?since=` and the
    # data API's lists; "" reads everything on the default database.
    "READ_DATABASE": "",
    # Operations.
    "READYZ_TIMEOUT_SECONDS": 2.0,
    "METRICS_TOKEN": "",
    "METRICS_ALLOWED_IPS": [],  # ipaddress networks
    "COMPRESSION_ZSTD_LEVEL": 1,
    "COMPRESSION_BROTLI_LEVEL": 1,
    "COMPRESSION_GZIP_LEVEL": 3,
    # The API's throttles (per account, per address without credentials, per
    # back-office token); a project's REST_FRAMEWORK rates win where given.
    "THROTTLE_RATES": {
        "user": "1200/min",
        "anon": "60/min",
        "token": "2400/min",
        "link": "1200/min",  # file and part links, per address
    },
}


class SyncSettings:
    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"no sync setting {name!r}")
        return getattr(settings, name, DEFAULTS[name])


sync_settings = SyncSettings()

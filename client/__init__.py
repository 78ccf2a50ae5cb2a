"""A reference offline-first client of the sync protocol (docs/protocol.md).

Small on purpose, and written to be ported: a mobile team should be able to
read it top to bottom and rebuild it in Kotlin or Swift.

- `store.py`: the local SQLite store (server copies, the outbox of pending
  mutations, conflicts, rejections, the cursor).
- `sync.py`: `SyncClient`, the sync loop, live pulls and the local edit API.
- `schema.py`: discovery's field metadata and offline validation.
- `files.py`: files on synced objects: attach, resumable uploads, lazy fetches.
- `http.py`: JSON over HTTP with gzip, retries, backoff and jitter.
- `cli.py` (`python -m client`): a command line for people; `demo.py`: `make demo`.

The sync loop, step by step, is in `client/README.md`.
"""

from client.errors import (
    ApiError,
    ClientError,
    ConflictSettled,
    NetworkError,
    NotFound,
    NotLoggedIn,
    Redirected,
    StaleResolution,
    UnexpectedResponse,
    UnsentChanges,
    UpgradeRequired,
    ValidationError,
)
from client.files import FileCorrupt, FileNotReady
from client.http import Deprecation, RetryPolicy
from client.sync import Progress, SyncClient, SyncReport

__all__ = [
    "ApiError",
    "ClientError",
    "ConflictSettled",
    "Deprecation",
    "FileCorrupt",
    "FileNotReady",
    "NetworkError",
    "NotFound",
    "NotLoggedIn",
    "Progress",
    "Redirected",
    "RetryPolicy",
    "StaleResolution",
    "SyncClient",
    "SyncReport",
    "UnexpectedResponse",
    "UnsentChanges",
    "UpgradeRequired",
    "ValidationError",
]

"""Token authentication that also finds the caller's device.

Every sync request names its device (X-Device-Id), which must belong to the
caller. Looked up after authentication, that was a second statement on every
pull and push (0.16-0.19 ms of a worker's CPU, one more round trip). Here the
device is read in the token's own statement, as a LEFT JOIN on the token's
user, and `devices.selectors.device_from_request` takes it from the request.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import connection

from devices.models import Device
from devices.selectors import DEVICE_FIELDS, HEADER, remember_device
from sync.api.auth import Companion, TokenAuthentication, with_key
from sync.models import Token

_DEVICE = Companion(
    table=Device._meta.db_table,
    columns=tuple(DEVICE_FIELDS),  # attnames that are also the columns
    on="c.id = %s AND c.user_id = t.user_id",
)


class DeviceTokenAuthentication(TokenAuthentication):
    device_id: uuid.UUID | None = None

    def authenticate(self, request: Any) -> tuple[Any, Token] | None:
        try:
            self.device_id = uuid.UUID(request.headers.get(HEADER, ""))
        except ValueError:
            self.device_id = None  # absent or malformed: the view says which
        found = super().authenticate(request)
        if found is not None and self.device_id is not None and found[1].companion_row:
            row = found[1].companion_row
            device = (
                None if row[0] is None else Device.from_db(connection.alias, DEVICE_FIELDS, row)
            )
            remember_device(request, self.device_id, device)
        return found

    def tokens_with_key(self, key: str) -> list[Token]:
        if self.device_id is None:
            return super().tokens_with_key(key)
        return with_key(key, _DEVICE, [self.device_id])

"""Password guessing: what repeated failures lock, and what a locked-out login
gets (django-axes counts the failures).

- A username from one address: locked after LOGIN_FAILURE_LIMIT failures. An
  attacker elsewhere guessing a real user's password locks only themselves
  out, never the user (a lock on the username alone let anyone lock out
  anyone, staff included, with ten wrong guesses).
- One address, whatever the usernames (spraying a common password over many
  accounts): locked after ADDRESS_FACTOR times as many. Higher, because
  phones share carrier NAT addresses and offices share one, so a real user
  on the attacker's address is locked out only by a much longer attack.

Staff see the locks (Axes → Access attempts) and lift one by deleting it."""

from __future__ import annotations

from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_failure_limit
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse


def lockout_response(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    """429 with Retry-After: JSON under /api/, a page in the admin."""
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    detail = f"Too many failed logins; try again in {max(1, seconds // 60)} minutes."
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse({"code": "too_many_attempts", "detail": detail}, status=429)
    else:
        response = TemplateResponse(
            request, "sync/locked_out.html", {"detail": detail, "title": "Locked out"}, status=429
        )
        response.render()
    response["Retry-After"] = str(seconds)
    return response


ADDRESS_FACTOR = 10


def lockout_parameters(request_or_attempt: Any, credentials: Any = None) -> list[Any]:
    """The pair (username, address), then the address alone (see above)."""
    return [["username", "ip_address"], "ip_address"]


class LockoutHandler(AxesDatabaseHandler):
    """django-axes' database handler, counting the pair and the address
    against their own limits (axes compares the largest count of its
    parameters with one limit)."""

    def get_failures(self, request: Any, credentials: Any = None) -> int:
        pair, address = (
            attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0
            for attempts in self.get_user_attempts(request, credentials)
        )
        limit = get_failure_limit(request, credentials)
        return max(pair, limit if address >= limit * ADDRESS_FACTOR else 0)

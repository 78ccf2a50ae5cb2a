"""What a locked-out login gets (django-axes counts the failures)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse


def lockout_response(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    """429 with Retry-After: JSON under /api/, a page in the admin."""
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    detail = (
        f"Too many failed logins for this account; try again in {max(1, seconds // 60)} minutes."
    )
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


def lockout_parameters(request_or_attempt: Any, credentials: Any = None) -> list[str]:
    """What repeated failures lock: the account everywhere; in the admin also
    the address (staff sit behind few addresses). Not the address for the API:
    phones share carrier NAT addresses, and DRF's per-address throttle already
    limits how fast one address may try."""
    path = getattr(request_or_attempt, "path_info", "") or ""
    return ["username", "ip_address"] if path.startswith("/admin/") else ["username"]

"""Rate limits per token (DRF throttles, counted in the cache)."""

from __future__ import annotations

from typing import Any

from rest_framework.throttling import SimpleRateThrottle


class TokenRateThrottle(SimpleRateThrottle):
    """THROTTLE_TOKEN per token: each integration's token has its own budget,
    so one runaway import does not starve another that shares its account."""

    scope = "token"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        token = getattr(request, "auth", None)
        ident = getattr(token, "token_key", None)
        if ident is None:
            if not request.user or not request.user.is_authenticated:
                return None  # the anonymous throttle covers these
            ident = f"user-{request.user.pk}"
        return self.cache_format % {"scope": self.scope, "ident": ident}

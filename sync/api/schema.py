"""How the OpenAPI document describes our token authentication."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class TokenScheme(OpenApiAuthenticationExtension):
    target_class = "sync.api.auth.TokenAuthentication"
    match_subclasses = True  # sync.api.device_auth.DeviceTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "A token from POST /api/v1/auth/token/ (or issued to a service "
            'account in the admin), sent as "Token <token>".',
        }

"""The OpenAPI document's answers that every operation can give.

Views describe what their own logic answers. Some answers come from layers
every request crosses (the parsers, authentication, throttles and the login
lockout, the body size limit), so no single view knows them: this hook adds
them to each operation, so that clients (and the fuzzer's status code check)
find every answer the server really gives in the document.
"""

from __future__ import annotations

from typing import Any

# How the document describes the API, whatever the project's
# SPECTACULAR_SETTINGS: sync.urls serves it with these.
SCHEMA_SETTINGS = {
    "TITLE": "Sync server API",
    "DESCRIPTION": "Offline-first sync protocol v1: devices, pull, push, conflicts.",
    "VERSION": "1.0.0",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        # Throttling, authentication, parsing and size limits answer on every path.
        "sync.api.openapi.add_common_responses",
    ],
    # One named component per choice set (several serializers share them).
    "ENUM_NAME_OVERRIDES": {
        "ChangeOpEnum": [("upsert", "upsert"), ("delete", "delete")],
        "MutationOpEnum": "sync.choices.Op",
        "ConflictPolicyEnum": "sync.choices.Policy",
        "ConflictResolutionEnum": "sync.choices.ResolvedBy",
        "ConflictStatusEnum": "sync.choices.ConflictStatus",
        "ConflictKindEnum": "sync.choices.ConflictKind",
        "ResolveChoiceEnum": "sync.choices.Choice",
        "RejectionReasonEnum": "sync.choices.Reason",
    },
}

ERROR_REF = {"$ref": "#/components/schemas/Error"}
BODY_METHODS = {"post", "put", "patch"}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": ERROR_REF}},
    }
    if headers:
        response["headers"] = headers
    return response


RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "integer"},
        "description": "Seconds to wait before trying again.",
    }
}


def _authenticated(operation: dict[str, Any]) -> bool:
    return any(requirement for requirement in operation.get("security", []))


def add_common_responses(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS)."""
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            common = {
                "400": _error("Invalid request (`invalid`, `parse_error`, `bad_request`, ...)."),
                "406": _error("The Accept header excludes application/json."),
                "429": _error(
                    "Rate limit exceeded (`throttled`), or a login locked out after repeated "
                    "failures (`too_many_attempts`).",
                    RETRY_AFTER,
                ),
            }
            if _authenticated(operation):
                common["401"] = _error("Missing, unknown, revoked or expired token.")
            if method in BODY_METHODS:
                common["413"] = _error("The request body is too large (`payload_too_large`).")
                common["415"] = _error("The Content-Type is not application/json.")
            responses = operation["responses"]
            for status, response in common.items():
                responses.setdefault(status, response)
    return result

"""The product's settings, plus the hand-rolled baseline's URLs (bench only)."""

from config.settings import *  # noqa: F403
from config.settings import REST_FRAMEWORK

ROOT_URLCONF = "bench.urls"

# The baseline is a team's first endpoint on its project's DRF defaults: these
# are the ones the reference project had before the API brought its own
# classes (sync.api.base), so its numbers compare with earlier runs.
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "sync.api.device_auth.DeviceTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["syncbase.renderers.ORJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["syncbase.parsers.ORJSONParser"],
    "EXCEPTION_HANDLER": "syncbase.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "sync.api.throttling.AnonRateThrottle",
        "sync.api.throttling.UserRateThrottle",
    ],
}

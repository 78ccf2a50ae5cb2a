"""System checks: what a host project is missing or has wrong, with ids that
stay the same across releases (`manage.py check`; `SILENCED_SYSTEM_CHECKS`).

Errors stop the server; warnings say what will not work as documented."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.utils.module_loading import import_string

GUIDE = 'README, "Add sync to your Django project"'
NEEDED_APPS = ["rest_framework", "knox", "django_filters", "simple_history", "sync", "devices"]


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    problems: list[Any] = []
    missing = [app for app in NEEDED_APPS if not apps.is_installed(app)]
    if missing:
        problems.append(
            Error(
                f"INSTALLED_APPS lacks {', '.join(missing)}.",
                hint=f"Add them ({GUIDE}, step 2).",
                id="sync.E001",
            )
        )
    if getattr(settings, "KNOX_TOKEN_MODEL", None) != "sync.Token":
        problems.append(
            Error(
                "KNOX_TOKEN_MODEL is not 'sync.Token': API tokens would be knox's own "
                "model, which the API does not read.",
                hint='Set KNOX_TOKEN_MODEL = "sync.Token" before the first migrate.',
                id="sync.E002",
            )
        )
    schema_class = getattr(settings, "REST_FRAMEWORK", {}).get("DEFAULT_SCHEMA_CLASS")
    if not _is_spectacular(schema_class):
        problems.append(
            Error(
                "REST_FRAMEWORK['DEFAULT_SCHEMA_CLASS'] is not drf-spectacular's AutoSchema: "
                "the API's OpenAPI document (/api/v1/schema/) cannot be generated.",
                hint='REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": '
                '"drf_spectacular.openapi.AutoSchema", ...}',
                id="sync.E003",
            )
        )
    problems += _middleware_order()
    problems += _sync_only_middleware()
    problems += _cache_and_tasks()
    problems += _web_push_key()
    return problems


def _web_push_key() -> list[Any]:
    """A VAPID key that cannot be read would fail every browser's wake-up."""
    from devices.webpush import public_key

    try:
        public_key()
    except Exception as error:  # noqa: BLE001 - whatever the key parser raises
        return [
            Error(
                f"WEBPUSH_VAPID_PRIVATE_KEY cannot be read as a P-256 key: {error!r}",
                hint="Give the path of the PEM file `vapid --gen` wrote, its text, or the raw "
                "key in URL-safe base64; or unset it (no Web Push).",
                id="sync.E006",
            )
        ]
    return []


@register()
def check_models(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    from sync import registry

    return [Error(r.message, hint=r.hint, obj=r.model, id=r.id) for r in registry.refused]


@register(Tags.database)
def check_capture(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[Any]:
    """Run with `check --database default` and by `migrate`: the triggers
    that capture writes are those the code generates."""
    if not databases:
        return []
    from sync.engine import capture

    problems = []
    for alias in databases:
        stale = capture.missing(alias)
        if stale:
            problems.append(
                Warning(
                    f"The database {alias!r} does not capture writes to {', '.join(stale)} "
                    "as the code does: writes other than the sync service's may not reach "
                    "devices.",
                    hint="Run `manage.py migrate` (it installs them).",
                    id="sync.W101",
                )
            )
    return problems


def _is_spectacular(path: Any) -> bool:
    if not path:
        return False
    try:
        from drf_spectacular.openapi import AutoSchema

        found = import_string(path) if isinstance(path, str) else path
        return isinstance(found, type) and issubclass(found, AutoSchema)
    except ImportError:
        return False


def _middleware_order() -> list[Any]:
    middleware = list(settings.MIDDLEWARE)
    history = "simple_history.middleware.HistoryRequestMiddleware"
    auth = "django.contrib.auth.middleware.AuthenticationMiddleware"
    if history not in middleware:
        return [
            Warning(
                f"{history} is not in MIDDLEWARE: history rows of writes made in requests "
                "(the admin, your views) will not name who made them.",
                hint=f"Add it after {auth} ({GUIDE}, step 2).",
                id="sync.W102",
            )
        ]
    if auth in middleware and middleware.index(history) < middleware.index(auth):
        return [
            Warning(
                f"{history} comes before {auth}: it cannot see the request's user.",
                hint="Move it after the authentication middleware.",
                id="sync.W102",
            )
        ]
    return []


def _sync_only_middleware() -> list[Any]:
    problems = []
    for path in settings.MIDDLEWARE:
        try:
            middleware = import_string(path)
        except ImportError:
            continue  # Django itself fails loudly on it, at startup
        # False unless declared, as Django's handler reads it.
        if getattr(middleware, "async_capable", False):
            continue
        problems.append(
            Warning(
                f"{path} in MIDDLEWARE is not async-capable: under ASGI (live pulls, "
                "`manage.py serve_live`), each waiting live pull holds a thread while "
                "this middleware runs.",
                hint="Use an async-capable middleware (see docs/protocol.md, 'Live pulls').",
                id="sync.W106",
            )
        )
    return problems


def _cache_and_tasks() -> list[Any]:
    from syncbase.tasks import celery_configured

    problems = []
    if not celery_configured():
        problems.append(
            Warning(
                "No Celery app is configured: wake-ups are sent in the writing request, "
                "after it commits, and the outbox's periodic sweep never runs.",
                hint="Set up Celery (its Django guide) and run a worker and beat in production.",
                id="sync.W103",
            )
        )
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if not settings.DEBUG and backend.endswith(("LocMemCache", "DummyCache")):
        problems.append(
            Warning(
                "The cache is local to each process: rate limits and the coalescing of "
                "wake-ups count per process, not for the whole deployment.",
                hint="Use a shared cache (Redis: django-redis) in production.",
                id="sync.W104",
            )
        )
    from django.contrib import admin
    from django.contrib.auth import get_user_model

    from sync.admin.accounts import UserDataActions

    user_admin = admin.site._registry.get(get_user_model())
    if apps.is_installed("django.contrib.admin") and not isinstance(user_admin, UserDataActions):
        problems.append(
            Warning(
                "The user model's admin has no data export and erasure actions.",
                hint="List sync after django.contrib.auth in INSTALLED_APPS, and register "
                "the user model's admin before sync's admin is loaded.",
                id="sync.W105",
            )
        )
    return problems

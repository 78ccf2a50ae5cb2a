from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.http import HttpRequest, JsonResponse

from syncbase.conf import sync_settings
from syncbase.tasks import celery_configured

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers and operators: 200 when the database (and Redis, when
    configured) answer, 503 naming what does not. No authentication, no details
    beyond up/down."""
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception:
        logger.exception("health check: database unreachable")
        checks["database"] = "down"
    if _shared_cache():
        try:
            cache.set("healthz", "1", 5)
            checks["cache"] = "ok" if cache.get("healthz") == "1" else "down"
        except Exception:
            logger.exception("health check: cache unreachable")
            checks["cache"] = "down"
    healthy = all(v == "ok" for v in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "down", **checks}, status=200 if healthy else 503
    )


def _shared_cache() -> bool:
    """A cache other processes share (Redis, Memcached...), worth probing."""
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    return not backend.endswith(("LocMemCache", "DummyCache"))


def _runs_tasks_here() -> bool:
    """Celery runs tasks in this process (eagerly, or without a Celery app):
    there is no broker to ask."""
    from celery import current_app

    # The Django setting when the project has one (tests change it), else the app's.
    eager = getattr(settings, "CELERY_TASK_ALWAYS_EAGER", current_app.conf.task_always_eager)
    return not celery_configured() or bool(eager)


def _broker_url() -> str:
    # The Django setting when the project has one (tests change it), else the app's.
    from celery import current_app

    return getattr(settings, "CELERY_BROKER_URL", None) or current_app.conf.broker_url


# --- readiness --------------------------------------------------------------------------


def _database_answers() -> None:
    # Runs in a thread of its own, hence on a connection of its own: closed
    # here, so probes never pile up connections.
    conn = connections[DEFAULT_DB_ALIAS]
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        conn.close()


def _cache_answers() -> None:
    key = f"readyz:{uuid.uuid4().hex}"
    cache.set(key, "1", 10)
    found = cache.get(key)
    cache.delete(key)
    if found != "1":
        raise RuntimeError("the cache did not return what was stored")


def _broker_answers() -> None:
    # The project's Celery app, whatever it is called (the one its
    # celery.py made current), not one of ours.
    from celery import current_app as app

    timeout = sync_settings.READYZ_TIMEOUT_SECONDS
    # The URL from the settings rather than the Celery app's configuration,
    # which is read once: the same value in production, overridable in tests.
    with app.connection_for_write(url=_broker_url(), connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0)


def readiness() -> dict[str, str]:
    """Each dependency's state: ok, down, timeout, or skipped (the broker when
    Celery runs eagerly in the web process). The checks run at once, each in
    a thread, so one that hangs costs READYZ_TIMEOUT_SECONDS, not more."""
    checks: dict[str, Callable[[], None]] = {
        "database": _database_answers,
        "cache": _cache_answers,
    }
    states: dict[str, str] = {}
    if _runs_tasks_here():
        states["broker"] = "skipped"
    else:
        checks["broker"] = _broker_answers
    pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="readyz")
    futures = {name: pool.submit(check) for name, check in checks.items()}
    deadline = time.monotonic() + sync_settings.READYZ_TIMEOUT_SECONDS
    for name, future in futures.items():
        try:
            future.result(timeout=max(0.0, deadline - time.monotonic()))
            states[name] = "ok"
        except FutureTimeout:
            logger.warning("readiness: %s did not answer in time", name)
            states[name] = "timeout"
        except Exception as exc:
            # A dependency that is down is an operational state, not a bug:
            # its error in one line, no traceback.
            logger.warning("readiness: %s unreachable: %s", name, exc)
            states[name] = "down"
    # A check still hanging finishes (or fails) on its own; nobody waits for it.
    pool.shutdown(wait=False, cancel_futures=True)
    return {name: states[name] for name in ("database", "cache", "broker")}


def readyz(request: HttpRequest) -> JsonResponse:
    """For load balancers and orchestrators: 200 when the database, the cache
    and (unless Celery is eager) the broker answer within
    READYZ_TIMEOUT_SECONDS each, 503 otherwise; the body names each check's
    state. No authentication, no details beyond the states."""
    checks = readiness()
    ready = all(state in ("ok", "skipped") for state in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )

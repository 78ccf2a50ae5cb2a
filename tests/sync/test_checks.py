"""`manage.py check` names what a host project is missing or has wrong, with
stable ids (sync/checks.py)."""

from __future__ import annotations

import pytest
from celery import Celery
from django.core.management import call_command
from django.db import connection, models
from django.test.utils import isolate_apps

from fieldwork.models import Customer
from sync import checks, registry
from sync.engine import capture
from sync.models import SyncedModel

pytestmark = pytest.mark.django_db


def ids(found) -> list[str]:
    return sorted(p.id for p in found)


def test_the_reference_project_passes(settings):
    settings.DEBUG = True  # its local-memory cache is for development
    assert [p for p in checks.check_settings() if p.id.startswith("sync.")] == []
    assert checks.check_models() == []
    assert checks.check_capture(databases=["default"]) == []
    call_command("check", "--fail-level", "WARNING", verbosity=0)


def test_missing_apps_token_model_and_schema_class_are_errors(settings):
    settings.KNOX_TOKEN_MODEL = "knox.AuthToken"
    settings.REST_FRAMEWORK = {}
    found = ids(checks.check_settings())
    assert "sync.E002" in found and "sync.E003" in found
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "simple_history"]
    assert "sync.E001" in ids(checks.check_settings())


def test_history_middleware_missing_or_before_authentication_is_a_warning(settings):
    history = "simple_history.middleware.HistoryRequestMiddleware"
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != history]
    assert "sync.W102" in ids(checks.check_settings())
    settings.MIDDLEWARE = [history, *settings.MIDDLEWARE]
    assert "sync.W102" in ids(checks.check_settings())


class SyncOnlyMiddleware:
    """Declares neither `sync_capable` nor `async_capable`: sync only, as Django reads it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)


def test_a_sync_only_middleware_is_a_warning_naming_it(settings):
    assert "sync.W106" not in ids(checks.check_settings())
    path = f"{__name__}.SyncOnlyMiddleware"
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, path]
    [warning] = [p for p in checks.check_settings() if p.id == "sync.W106"]
    assert path in warning.msg and "ASGI" in warning.msg
    assert "async-capable" in warning.hint


def test_a_process_local_cache_in_production_is_a_warning(settings):
    settings.DEBUG = False
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert "sync.W104" in ids(checks.check_settings())


def test_no_celery_app_is_a_warning():
    from celery import current_app

    configured = current_app._get_current_object()
    Celery("default", set_as_current=True)  # what a project without Celery has
    try:
        assert "sync.W103" in ids(checks.check_settings())
    finally:
        configured.set_current()
    assert "sync.W103" not in ids(checks.check_settings())


@isolate_apps("fieldwork")
def test_a_model_without_a_uuid_key_is_refused_with_a_check_error():
    class Legacy(SyncedModel):
        __module__ = "fieldwork.models"  # where its history model is made too
        id = models.AutoField(primary_key=True)
        owner = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="+")

        class Meta:
            app_label = "fieldwork"

    before = len(registry.refused)
    try:
        assert registry.register(Legacy, fields=[]) is None
        [error] = [e for e in checks.check_models() if e.obj is Legacy]
        assert error.id == "sync.E004" and "UUID" in error.msg
        assert "Add sync to your Django project" in error.hint
        assert registry.for_model(Legacy) is None
    finally:
        del registry.refused[before:]


def test_an_unknown_scope_field_is_refused_with_a_check_error():
    before = len(registry.refused)
    try:
        assert registry.register(Customer, fields=["name"], scope={"team": "crew"}) is None
        [error] = checks.check_models()
        assert error.id == "sync.E005" and "scope field 'crew'" in error.msg
    finally:
        del registry.refused[before:]
    assert registry.for_model(Customer).scope == {"user": "owner", "team": "team"}


@pytest.mark.postgres
def test_triggers_that_differ_from_the_code_are_a_database_warning():
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER sync_capture_after ON fieldwork_customer")
    try:
        [warning] = checks.check_capture(databases=["default"])
        assert warning.id == "sync.W101" and "fieldwork.customer" in warning.msg
    finally:
        capture.install_all(force=True)
    assert checks.check_capture(databases=["default"]) == []

"""Hostile input on the admin's pages: an id that cannot be one, a NUL byte.

Anything typed in a URL reaches the admin: an object id in the path, filter,
search and ordering values in the query string, the ids a bulk action posts.
Django's own views turn most bad values away, but not all of them, and not
ours: a lookup by a value that cannot be the field's (text for a UUID, a word
for a number) raises before any query, and PostgreSQL refuses any text with
a NUL byte in it. Both would answer 500. Every admin of ours mixes in
`GuardedAdmin`; views that look objects up themselves use `pk_or_404`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.db import models
from django.http import Http404, HttpRequest, HttpResponse, QueryDict

NUL = "\x00"


def has_nul(values: Iterable[Any]) -> bool:
    return any(NUL in str(value) for value in values)


def query_has_nul(query: QueryDict) -> bool:
    """Whether a NUL byte is in any name or value of a query string or form."""
    return has_nul(query.keys()) or any(has_nul(query.getlist(key)) for key in query)


def pk_or_none(model: type[models.Model], object_id: Any) -> Any:
    """`object_id` as a value of the model's primary key, or None if it cannot be one
    (which is not to say that such an object exists)."""
    if object_id is None or NUL in str(object_id):
        return None
    field = model._meta.pk
    try:
        pk = field.to_python(object_id)
        field.run_validators(pk)  # the column's range or length
    except (ValidationError, ValueError, TypeError):
        return None
    return pk


def pk_or_404(model: type[models.Model], object_id: Any) -> Any:
    """`object_id` as a value of the model's primary key; 404 if it cannot be one."""
    pk = pk_or_none(model, object_id)
    if pk is None:
        raise Http404(f"No {model._meta.verbose_name} has that id.")
    return pk


class GuardedAdmin(admin.ModelAdmin):
    """A model admin whose pages refuse values no object or filter can have,
    rather than failing on them.

    - an object id that is not one (change, delete and history pages): as for
      an object that does not exist;
    - a NUL byte anywhere in the changelist's query string (a filter, the
      search, the ordering, a lookup Django allows on any field): Django's
      answer to a lookup it cannot apply, a redirect to the list with `?e=1`;
    - a bulk action on something that is not an id: nothing is done, and the
      staff member is told so.
    """

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Any:
        if NUL in str(object_id):
            return None
        return super().get_object(request, object_id, from_field)

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        if query_has_nul(request.GET):
            raise IncorrectLookupParameters("A NUL byte in the query string")
        return super().get_changelist_instance(request)

    def response_action(
        self, request: HttpRequest, queryset: Any, *args: Any, **kwargs: Any
    ) -> HttpResponse | None:
        selected = request.POST.getlist(ACTION_CHECKBOX_NAME)
        # As Django filters by them: pk__in=selected.
        if any(pk_or_none(self.model, value) is None for value in selected):
            self.message_user(
                request,
                "The selection held something that is not an id; nothing was done.",
                messages.WARNING,
            )
            return None
        return super().response_action(request, queryset, *args, **kwargs)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        pk_or_404(self.model, unquote(object_id))
        return super().history_view(request, object_id, extra_context)

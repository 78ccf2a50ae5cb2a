"""`field__any=values`: membership in a list sent as one array parameter.

Django's `__in` writes one placeholder per value and prepares each value on
its own. For the few hundred ids a push of 500 looks up at a time, that cost
more than the query: every value went through the field's preparation and the
lookup's parameter zipping, and the statement text, thousands of characters
long, was too long for psycopg's cache of parsed statements, so it was split
again on every call. On PostgreSQL `= ANY(%s)` has one parameter and a short
statement text whatever the number of values. Elsewhere (SQLite) it is `__in`.

Not for look-ups that lock or sort (`select_for_update`, `order_by`): the
generic plan PostgreSQL may cache for such a prepared statement while the
table is small (it assumes ten values) reads the whole table in key order
once the table has grown; `__in` did not show it (see Batch.lock).

No maintained library adds this lookup alone; it is the few lines below.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db.models import Field, ForeignObject
from django.db.models.fields.related_lookups import RelatedIn
from django.db.models.lookups import In


@Field.register_lookup
class AnyOf(In):
    lookup_name = "any"

    def as_postgresql(self, compiler: Any, connection: Any) -> tuple[str, Any]:
        if not self.rhs_is_direct_value():
            return self.as_sql(compiler, connection)  # a subquery: IN (SELECT …)
        field = self.lhs.output_field
        # Values were prepared by In.get_prep_lookup; NULL is never equal to anything.
        values = [
            field.get_db_prep_value(v, connection, prepared=True)
            for v in dict.fromkeys(self.rhs)
            if v is not None
        ]
        if not values:
            raise EmptyResultSet
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s)", [*lhs_params, values]


@ForeignObject.register_lookup
class RelatedAnyOf(RelatedIn):
    """`reference__any=…` / `reference_id__any=…`: ids or instances, as `__in` takes them."""

    lookup_name = "any"
    as_postgresql = AnyOf.as_postgresql

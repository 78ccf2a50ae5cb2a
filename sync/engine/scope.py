"""Who may see and write which synced objects: the one home of that rule.

Objects live in channels (`SyncedType.channels_of`: `user:<id>`, `team:<id>`,
...). A user belongs to their own channel and to the channels granted to them
(`ChannelGrant`). A `Scope` is what one writer or reader may touch:

- a device user: their channels (`Scope.of_user`);
- staff in the admin, or a service account without a channel restriction:
  every object (`Scope.everything`);
- a service account restricted to some channels (`Scope.within`).

Pull, push, reference checks, conflict resolution and the admin all ask the
scope; nothing else intersects channels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db.models import Q

from sync.channels import user_channels

if TYPE_CHECKING:
    from sync.registry import SyncedType

OUTSIDE = "The object would be outside your scope."
FOREIGN = "You may only place objects in scopes you belong to."


@dataclass(frozen=True)
class Scope:
    """What `user` may see and write.

    `user` is the author of what is written through this scope: the history
    user, the owner of objects it creates, the user a conflict is raised for.
    `channels` is None for a scope over every object.
    """

    user: Any
    channels: frozenset[str] | None
    # Staff may choose or change an object's owner; devices and service
    # accounts only ever create objects they own.
    sets_owner: bool = False

    @classmethod
    def of_user(cls, user: Any) -> Scope:
        return cls(user, frozenset(user_channels(user.pk)))

    @classmethod
    def everything(cls, user: Any, *, sets_owner: bool = True) -> Scope:
        return cls(user, None, sets_owner=sets_owner)

    @classmethod
    def within(cls, user: Any, channels: Iterable[str]) -> Scope:
        return cls(user, frozenset(channels))

    @property
    def user_id(self) -> int:
        """The author's id: every scope that writes has an author."""
        pk = getattr(self.user, "pk", None)
        if pk is None:
            raise ValueError("This scope has no user to write as")
        return int(pk)

    def sees_channels(self, channels: set[str]) -> bool:
        return self.channels is None or bool(channels & self.channels)

    def sees(self, stype: SyncedType, row: Mapping[str, Any]) -> bool:
        """Whether an object (its attname → value mapping: a row or an instance
        `__dict__`) is in this scope."""
        return self.sees_channels(stype.channels_of(row))

    def filter(self, stype: SyncedType) -> Q:
        """The objects of `stype` in this scope, as a queryset filter (the same
        rule as `sees`, for the database to apply)."""
        if self.channels is None:
            return Q()
        values = self._by_prefix()
        q = Q(pk__in=[])
        for prefix, attname in stype.scope_attnames:
            if prefix in values:
                q |= Q(**{f"{attname}__in": values[prefix]})
        return q

    def _by_prefix(self) -> dict[str, list[str]]:
        """The scope's channels grouped by kind: {"user": ["7"], "team": [...]}."""
        values: dict[str, list[str]] = {}
        for channel in self.channels or ():
            prefix, _, value = channel.partition(":")
            values.setdefault(prefix, []).append(value)
        return values

    def visible_sql(self, stype: SyncedType, table: str) -> tuple[str, list[list[str]]]:
        """SQL (PostgreSQL) for "a row of `table` (quoted) is live and in this
        scope", with its parameters: the rule of `sees` and `filter`, for a
        statement that is not a queryset (the pull page's)."""
        live = f"{table}.deleted_at IS NULL"
        if self.channels is None:
            return live, []
        values = self._by_prefix()
        tests, params = [], []
        for prefix, attname in stype.scope_attnames:
            if prefix in values:
                # Channel values are text; the comparison runs on rows already
                # found by primary key, so no index is lost by the cast.
                tests.append(f'{table}."{attname}"::text = ANY(%s)')
                params.append(values[prefix])
        if not tests:
            return "false", []
        return f"({live} AND ({' OR '.join(tests)}))", params

    def placement_errors(
        self, stype: SyncedType, before: Mapping[str, Any] | None, after: Mapping[str, Any]
    ) -> dict[str, list[str]] | None:
        """A write must leave the object in this scope, and may only put it in
        channels the scope holds, or that it was already in: a teammate editing
        an object keeps it in its owner's own channel."""
        if self.channels is None:
            return None
        new = stype.channels_of(after)
        if not new & self.channels:
            return {name: [OUTSIDE] for name in sorted(stype.scope.values())}
        # A deleted object keeps its channels: restoring it puts it back where it was.
        old = stype.channels_of(before) if before is not None else set()
        foreign = new - old - self.channels
        if not foreign:
            return None
        errors: dict[str, list[str]] = {}
        for prefix, name in stype.scope.items():
            if f"{prefix}:{after[stype.codecs[name].attname]}" in foreign:
                errors[name] = [FOREIGN]
        return errors

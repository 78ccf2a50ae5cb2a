"""The named choices of the sync engine: every word the protocol, the services
and the admin share, so none of them is spelt as a bare string twice."""

from __future__ import annotations

from django.db import models


class Policy(models.TextChoices):
    """How a model settles concurrent changes (docs/protocol.md, "Discover")."""

    MERGE = "merge", "merge disjoint fields, a person settles overlaps"
    MANUAL = "manual", "a person settles any concurrent change"
    SERVER_WINS = "server_wins", "the server's values win"
    CLIENT_WINS = "client_wins", "the client's values win"
    CUSTOM = "custom", "a server-side resolver decides"


class ResolvedBy(models.TextChoices):
    """Who may settle a model's conflicts: the user who raised one (from the app) or staff only."""

    OWNER = "owner", "the user who raised it, or staff"
    STAFF = "staff", "staff only"


class Op(models.TextChoices):
    """What a pushed mutation does."""

    CREATE = "create", "create"
    UPDATE = "update", "update"
    DELETE = "delete", "delete"


class Status(models.TextChoices):
    """The outcome of one mutation (docs/protocol.md, "Push")."""

    APPLIED = "applied", "applied"
    MERGED = "merged", "merged"
    CONFLICT = "conflict", "conflict"
    REJECTED = "rejected", "rejected"
    # Never sent to devices: writers that asked to refuse stale writes
    # (`OnStale.REFUSE`) get this instead of a merge, with the current state.
    STALE = "stale", "stale"


class OnStale(models.TextChoices):
    """What a write based on an older version than the server's does."""

    MERGE = "merge", "three-way merge under the model's policy (device pushes)"
    REFUSE = "refuse", "refuse it with the current state (resolutions, If-Match writes)"


class ConflictKind(models.TextChoices):
    UPDATE_UPDATE = "update_update", "both sides changed fields"
    UPDATE_DELETE = "update_delete", "client updated, server deleted"
    DELETE_UPDATE = "delete_update", "client deleted, server changed"


class ConflictStatus(models.TextChoices):
    OPEN = "open", "open"
    RESOLVED = "resolved", "resolved"
    SUPERSEDED = "superseded", "superseded"
    DISMISSED = "dismissed", "dismissed"


class Choice(models.TextChoices):
    """How a person settles a conflict (docs/protocol.md, "Conflicts")."""

    SERVER = "server", "keep the server's values (keep deleted, or keep the object)"
    CLIENT = "client", "take the client's values (restore, or delete)"
    FIELDS = "fields", "the given value for each field at stake"


class Reason(models.TextChoices):
    """Why a mutation was rejected, for code to act on (the messages in
    `errors` are for people and may be reworded)."""

    INVALID = "invalid", "invalid data or envelope"
    NOT_FOUND = "not_found", "no such object in the writer's scope"
    GONE = "gone", "the object has been deleted"
    EXISTS = "exists", "an object with this id already exists"
    PROTECTED = "protected", "other objects refer to it"
    REUSED = "mutation_id_reused", "the mutation id was used for another change"
    RETIRED = "retired", "the model is no longer synced"

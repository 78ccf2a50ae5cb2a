"""Serializers for the OpenAPI document and the conflicts list.

Pull and push bodies are validated by the sync services (a batch at a time, see
`sync.codecs`); these classes describe them to drf-spectacular. Fields named like
Serializer attributes (`data`, `fields`, `errors`...) are what the protocol calls
them; DRF moves declared fields out of the class, so nothing is shadowed at run
time, but the stubs cannot know that (hence the type: ignore comments).
"""

from __future__ import annotations

from rest_framework import serializers

from sync.choices import Choice, Policy, Reason, ResolvedBy
from sync.codecs import WIRE_TYPES
from sync.models import Conflict


class ChangeSerializer(serializers.Serializer):
    model = serializers.CharField(help_text="app_label.modelname")
    id = serializers.UUIDField()
    op = serializers.ChoiceField(choices=["upsert", "delete"])
    version = serializers.IntegerField()
    data = serializers.JSONField(allow_null=True, help_text="Field values; null for a delete.")  # type: ignore[assignment]


class PullResponseSerializer(serializers.Serializer):
    changes = ChangeSerializer(many=True)
    cursor = serializers.CharField(help_text="Opaque; send it back as `cursor`.")
    has_more = serializers.BooleanField()
    remaining = serializers.IntegerField(help_text="Estimate of changes still to come.")


class MutationSerializer(serializers.Serializer):
    mutation_id = serializers.UUIDField(help_text="Chosen by the client; a retry reuses it.")
    model = serializers.CharField()
    op = serializers.ChoiceField(choices=["create", "update", "delete"])
    id = serializers.UUIDField()
    base_version = serializers.IntegerField(allow_null=True, required=False)
    data = serializers.JSONField(required=False)  # type: ignore[assignment]


class PushRequestSerializer(serializers.Serializer):
    mutations = MutationSerializer(many=True, help_text="At most 500, applied in order.")
    cursor = serializers.CharField(
        required=False,
        help_text="Optional: your current pull cursor. The response cursor is this one, moved "
        "past your own changes when nothing else changed in between.",
    )


class MutationResultSerializer(serializers.Serializer):
    # Strings, not UUIDs: a rejected mutation echoes whatever the client sent.
    mutation_id = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=["applied", "merged", "conflict", "rejected"])
    id = serializers.CharField(allow_null=True)
    version = serializers.IntegerField(allow_null=True)
    data = serializers.JSONField(allow_null=True)  # type: ignore[assignment]
    conflict_id = serializers.UUIDField(allow_null=True)
    errors = serializers.DictField(child=serializers.ListField(), allow_null=True)  # type: ignore[assignment]
    reason = serializers.ChoiceField(
        choices=Reason.choices,
        allow_null=True,
        required=False,
        help_text="Why it was rejected (null otherwise); `errors` says it in words.",
    )


class PushResponseSerializer(serializers.Serializer):
    results = MutationResultSerializer(many=True)
    cursor = serializers.CharField()


class FieldDescriptionSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=WIRE_TYPES)
    required = serializers.BooleanField()  # type: ignore[assignment]
    read_only = serializers.BooleanField()  # type: ignore[assignment]
    nullable = serializers.BooleanField()
    choices = serializers.ListField(required=False)
    model = serializers.CharField(required=False, help_text="For references: the target model.")
    max_length = serializers.IntegerField(required=False, help_text="In characters.")
    format = serializers.CharField(required=False, help_text="email, url, slug or ip.")
    default = serializers.JSONField(
        required=False, help_text="What the server stores when a create leaves the field out."
    )


class SchemaStepSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    kind = serializers.ChoiceField(
        choices=["renamed", "added", "removed", "split", "retyped", "changed"]
    )
    summary = serializers.CharField()


class ModelDescriptionSerializer(serializers.Serializer):
    model = serializers.CharField()
    version = serializers.IntegerField(
        help_text="The current version of its schema; send the one the app was built "
        "against in X-Schema-Version."
    )
    fields = serializers.DictField(child=FieldDescriptionSerializer())  # type: ignore[assignment]
    conflict_policy = serializers.ChoiceField(choices=Policy.choices)
    conflict_resolution = serializers.ChoiceField(
        choices=ResolvedBy.choices,
        help_text="owner: the user who raised a conflict may resolve it from the app; "
        "staff: only staff, in the admin.",
    )
    history = SchemaStepSerializer(many=True, help_text="What changed at each version after 1.")


class ConflictSerializer(serializers.ModelSerializer):
    object_id = serializers.UUIDField()
    fields = serializers.JSONField(help_text="Fields at stake.")  # type: ignore[assignment]
    resolved_by = serializers.SlugRelatedField(  # type: ignore[var-annotated]
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="Username of who resolved it; null while open.",
    )

    class Meta:
        model = Conflict
        fields = [
            "id",
            "model",
            "object_id",
            "kind",
            "status",
            "policy",
            "fields",
            "base_version",
            "server_version",
            "base_data",
            "server_data",
            "client_data",
            "client_op",
            "mutation_id",
            "device_id",
            "resolution",
            "resolved_version",
            "resolved_by",
            "resolved_at",
            "note",
            "created_at",
        ]
        read_only_fields = fields


class ConflictResolveRequestSerializer(serializers.Serializer):
    choice = serializers.ChoiceField(choices=Choice.choices)
    values = serializers.DictField(
        required=False,
        help_text="For choice=fields: the final value of each field at stake.",
    )
    expected_version = serializers.IntegerField(
        min_value=0, help_text="The object's version you saw; if it moved on since, 412."
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class SyncedObjectSerializer(serializers.Serializer):
    model = serializers.CharField()
    id = serializers.UUIDField()
    version = serializers.IntegerField()
    data = serializers.JSONField(allow_null=True, help_text="null when deleted.")  # type: ignore[assignment]


class ConflictResolveResponseSerializer(serializers.Serializer):
    conflict = ConflictSerializer()
    object = SyncedObjectSerializer()


class StaleErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()
    object = SyncedObjectSerializer(help_text="The current state to resolve against.")


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


class TokenResponseSerializer(serializers.Serializer):
    token = serializers.CharField()


class LogoutRequestSerializer(serializers.Serializer):
    everywhere = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Revoke every token of the user, not only this one.",
    )


class LogoutResponseSerializer(serializers.Serializer):
    revoked = serializers.IntegerField(help_text="How many tokens were revoked.")


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(), required=False)  # type: ignore[assignment]

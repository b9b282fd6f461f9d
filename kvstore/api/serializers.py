"""Serializers of the KV API: they describe the lean views in the OpenAPI schema, and state the
rules the views enforce (values are strings; ``expected: null`` matches an absent key)."""

from __future__ import annotations

from rest_framework import serializers

from consensus.request_ids import MAX_REQUEST_ID_LENGTH

REQUEST_ID_HELP = (
    "Optional, unique per write. The same id sent again (to any node) returns the first result "
    "and applies nothing twice. Also accepted as the X-Request-Id header."
)


class PutRequestSerializer(serializers.Serializer):
    value = serializers.CharField(allow_blank=True, trim_whitespace=False)
    request_id = serializers.CharField(
        required=False, allow_null=True, max_length=MAX_REQUEST_ID_LENGTH, help_text=REQUEST_ID_HELP
    )


class CasRequestSerializer(serializers.Serializer):
    expected = serializers.CharField(
        allow_null=True,
        allow_blank=True,
        trim_whitespace=False,
        help_text="The value the key must have now; null means the key must be absent.",
    )
    value = serializers.CharField(allow_blank=True, trim_whitespace=False)
    request_id = serializers.CharField(
        required=False, allow_null=True, max_length=MAX_REQUEST_ID_LENGTH, help_text=REQUEST_ID_HELP
    )


class EntrySerializer(serializers.Serializer):
    key = serializers.CharField()
    value = serializers.CharField()
    instance = serializers.IntegerField(help_text="The instance that last wrote this key.")
    consistency = serializers.ChoiceField(
        choices=["linearizable", "local"], help_text="How this read was served."
    )


class PutResponseSerializer(serializers.Serializer):
    key = serializers.CharField()
    value = serializers.CharField()
    instance = serializers.IntegerField(help_text="The instance the write was chosen in.")
    request_id = serializers.CharField()
    duplicate = serializers.BooleanField(help_text="True for a retry of an applied request id.")


class DeleteResponseSerializer(serializers.Serializer):
    key = serializers.CharField()
    deleted = serializers.BooleanField(help_text="False when the key did not exist.")
    instance = serializers.IntegerField()
    request_id = serializers.CharField()
    duplicate = serializers.BooleanField()


class CasResponseSerializer(serializers.Serializer):
    key = serializers.CharField()
    succeeded = serializers.BooleanField()
    value = serializers.CharField(
        allow_null=True, help_text="The value now: the new one, or the current one on failure."
    )
    instance = serializers.IntegerField()
    request_id = serializers.CharField()
    duplicate = serializers.BooleanField()

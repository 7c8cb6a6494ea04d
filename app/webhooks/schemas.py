"""Schemas of the webhook endpoints: a hook as sent and as shown, and its delivery log."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from .service import EVENTS


def _describe(text: str) -> dict[str, str]:
    return {"description": text}


class WebhookInSchema(Schema):
    """A hook to register: where, for which events, and (optionally) its secret."""

    class Meta:
        unknown = EXCLUDE

    url = fields.String(required=True, validate=validate.Length(min=1, max=2000), metadata=_describe(
        "The target: http or https, no credentials, a public address (docs/security.md, "
        "Webhooks); redirects are not followed."))
    events = fields.List(fields.String(validate=validate.OneOf(EVENTS)), load_default=None,
                         metadata=_describe(f"Events to deliver, among {', '.join(EVENTS)} "
                                            "(default: all). `ping` is always deliverable."))
    secret = fields.String(load_default=None, allow_none=True, validate=validate.Length(16, 200),
                           metadata=_describe("The signing secret (16+ characters); left out, "
                                              "the server makes one. Shown in this answer only."))
    description = fields.String(load_default=None, allow_none=True,
                                validate=validate.Length(max=500))
    active = fields.Boolean(load_default=True, metadata=_describe("Deliver (true) or not."))


class WebhookPatchSchema(Schema):
    """Fields of a hook to change (the secret has its own endpoint)."""

    class Meta:
        unknown = EXCLUDE

    url = fields.String(validate=validate.Length(min=1, max=2000))
    events = fields.List(fields.String(validate=validate.OneOf(EVENTS)))
    description = fields.String(allow_none=True, validate=validate.Length(max=500))
    active = fields.Boolean(metadata=_describe("true switches a hook back on (and clears its "
                                               "failures)."))


class SecretInSchema(Schema):
    """A new secret for a hook; empty or left out: the server makes one."""

    class Meta:
        unknown = EXCLUDE

    secret = fields.String(load_default=None, allow_none=True, validate=validate.Length(16, 200))


class AttemptOut(Schema):
    """One delivery attempt."""

    at = fields.String()
    status = fields.Integer(allow_none=True,
                            metadata=_describe("The receiver's HTTP status; null: no answer."))
    duration_ms = fields.Float()
    error = fields.String(allow_none=True)


class DeliveryOut(Schema):
    """A delivery of one event to one hook, with its last attempts."""

    id = fields.String(metadata=_describe("Sent as X-Termsync-Delivery."))
    event = fields.String()
    state = fields.String(metadata=_describe("PENDING, DELIVERED, FAILED or CANCELLED."))
    created_on = fields.String()
    delivered_on = fields.String(allow_none=True)
    next_attempt_on = fields.String(allow_none=True,
                                    metadata=_describe("When the next attempt is due."))
    attempt_count = fields.Integer()
    attempts = fields.List(fields.Nested(AttemptOut), metadata=_describe(
        "The last attempts, oldest first."))
    redelivery_of = fields.String(allow_none=True)
    body = fields.Raw(metadata=_describe("The JSON body sent (signed byte for byte)."))


class WebhookOut(Schema):
    """A hook as its owners see it (never its secret)."""

    id = fields.String()
    repository = fields.String()
    url = fields.String(metadata=_describe("The target."))
    events = fields.List(fields.String())
    description = fields.String()
    active = fields.Boolean()
    failures = fields.Integer(metadata=_describe("Failed attempts in a row."))
    disabled_on = fields.String(allow_none=True,
                                metadata=_describe("When it was switched off after failing."))
    disabled_reason = fields.String(allow_none=True)
    last_delivery = fields.Dict(allow_none=True)
    secret_hint = fields.String(metadata=_describe("The secret's last four characters."))
    created_on = fields.String()
    created_by = fields.String(allow_none=True)
    updated_on = fields.String()


class WebhookCreatedOut(WebhookOut):
    """A hook just registered, or given a new secret: the secret, this once."""

    secret = fields.String(metadata=_describe("Keep it: it is never shown again."))

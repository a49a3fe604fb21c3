"""Errors of webhook endpoints, with their stable codes."""

from chainflow.core.errors import Conflict, InvalidInput, NotFound


class WebhookNotFound(NotFound):
    code = "webhook_not_found"


class DeliveryNotFound(NotFound):
    code = "webhook_delivery_not_found"


class WebhookUrlForbidden(InvalidInput):
    code = "webhook_url_forbidden"


class WebhookDisabled(Conflict):
    code = "webhook_disabled"

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


class DeliveryInFlight(Conflict):
    """A worker is sending this delivery now: another attempt would send it twice at once."""

    code = "webhook_delivery_in_flight"
    title = "Delivery in flight"


class DeliveryAlreadyPending(Conflict):
    """Another delivery of the same event to the same endpoint is pending: it sends it."""

    code = "webhook_delivery_pending"
    title = "Delivery already pending"

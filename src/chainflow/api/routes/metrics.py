"""`GET /metrics`: this process's metrics in the Prometheus text format (DESIGN §13)."""

import hmac

from fastapi import APIRouter, Request
from fastapi.security.utils import get_authorization_scheme_param
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.responses import Response

from chainflow.api.deps import ResourcesDep
from chainflow.api.metrics_collector import LaneCollector
from chainflow.core.errors import NotFound, Unauthorized

router = APIRouter(tags=["health"])


class InvalidMetricsToken(Unauthorized):
    code = "invalid_metrics_token"
    title = "Invalid metrics token"


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
        401: {"description": "CHAINFLOW_METRICS_TOKEN is set and the Bearer token differs"},
    },
)
async def scrape(request: Request, resources: ResourcesDep) -> Response:
    """This process's metrics; with CHAINFLOW_METRICS_TOKEN set, send it as a Bearer token."""
    if not resources.settings.metrics_enabled:
        raise NotFound("metrics are turned off (CHAINFLOW_METRICS_ENABLED=false)")
    expected = resources.settings.metrics_token
    if expected is not None:
        scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
        given = token.encode() if scheme.lower() == "bearer" else b""
        if not hmac.compare_digest(given, expected.get_secret_value().encode()):
            raise InvalidMetricsToken("send CHAINFLOW_METRICS_TOKEN as `Authorization: Bearer`")
    collector = request.app.state.lane_collector
    assert isinstance(collector, LaneCollector)  # noqa: S101 - set by create_app
    await collector.refresh(resources)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

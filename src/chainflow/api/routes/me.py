"""GET /v1/me: the caller's own key, never its secret (issue 21)."""

from fastapi import APIRouter

from chainflow.api.deps import ReadKey, ResourcesDep
from chainflow.api.ratelimit import rates_of
from chainflow.api.responses import problem_responses
from chainflow.domain.apikeys.schemas import MeRead

router = APIRouter(prefix="/v1", tags=["api keys"])


@router.get("/me", responses=problem_responses(401, 403))
async def read_me(resources: ResourcesDep, key: ReadKey) -> MeRead:
    """The key this request was made with: id, name, scopes, restrictions, expiry and rate
    limits (the key's own or the defaults)."""
    read, write = rates_of(key, resources.settings)
    return MeRead.of(key, read=read, write=write)

"""`GET /console`: the operator console, static files shipped in the package (issue 22).

The page holds no data and no key: it calls `/v1` from the browser with the API key the
operator pastes (kept in sessionStorage). Its Content-Security-Policy allows scripts, styles
and requests from this origin only, and no inline script or style.
"""

from importlib import resources
from pathlib import PurePosixPath

from fastapi import APIRouter
from starlette.responses import Response

from chainflow.core.errors import NotFound

router = APIRouter(tags=["console"], include_in_schema=False)

CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}


def _load() -> dict[str, bytes]:
    """Every file of the console by its path under /console/ (read once, a few dozen KB)."""
    root = resources.files("chainflow.api") / "console"
    files: dict[str, bytes] = {}
    pending = [(root, PurePosixPath())]
    while pending:
        folder, prefix = pending.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                pending.append((entry, prefix / entry.name))
            elif PurePosixPath(entry.name).suffix in _TYPES:
                files[str(prefix / entry.name)] = entry.read_bytes()
    return files


_FILES = _load()


def _serve(name: str) -> Response:
    content = _FILES.get(name)
    if content is None:
        raise NotFound(f"no console file {name}")
    media_type = _TYPES[PurePosixPath(name).suffix]
    return Response(content, media_type=media_type, headers=_HEADERS)


@router.get("/console")
async def console_page() -> Response:
    """The console's page."""
    return _serve("index.html")


@router.get("/console/{name:path}")
async def console_file(name: str) -> Response:
    """A script, style sheet or licence of the console."""
    return _serve(name)

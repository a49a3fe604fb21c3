"""URL checks and redaction: RPC URLs often carry a provider key in the path or query."""

import re
import unicodedata
from urllib.parse import urlsplit, urlunsplit

# A space, a C0 control character or DEL: never part of a URL as sent (RFC 3986 §2).
_BLANK_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def redact_url(url: str) -> str:
    """Keep scheme, host and port; hide credentials, path and query, which may hold a key."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    hidden = bool(parts.username or parts.password or parts.query or parts.path.strip("/"))
    return f"{parts.scheme}://{netloc}" + ("/***" if hidden else "")


MASKED_USERINFO = "***"  # what `shown_url` shows in place of a URL's credentials


def shown_url(url: str) -> str:
    """A URL kept in full (a webhook's) as answers show it: its credentials (`user:pass@`)
    masked, `scheme://***@host:port/path?query`; any other unchanged. Its path and query
    are shown as those of a URL without credentials are (the endpoint is told apart by
    them), its credentials never."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    masked = f"{MASKED_USERINFO}@{host}"
    return urlunsplit((parts.scheme, masked, parts.path, parts.query, parts.fragment))


def check_http_url(url: str) -> str:
    """Return the URL if it is an absolute http(s) URL with a host, else raise ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    if len(url) > 2048:
        raise ValueError("must be at most 2048 characters")
    if "\x00" in url:
        raise ValueError("must not contain a NUL character")
    if _BLANK_OR_CONTROL.search(url):  # urlsplit drops tabs and newlines; a client would not
        raise ValueError("must not contain spaces or control characters (percent-encode them)")
    _check_host(parts.hostname)
    try:
        port = parts.port
    except ValueError:  # out of 0-65535, or not a number
        port = 0
    if port == 0:
        raise ValueError("must have a port from 1 to 65535, if any")
    return url


def _check_host(host: str) -> None:
    """Refuse a host no request can reach: one that NFKC folds to hold a blank or a control
    character (`exa\u00a0mple.com`: the HTTP client folds it to `exa mple.com`, and every
    attempt failed), or that IDNA encoding rejects (an empty label, one over 63 characters)."""
    folded = unicodedata.normalize("NFKC", host)
    if any(c.isspace() or unicodedata.category(c) == "Cc" for c in folded):
        raise ValueError("must not have spaces or control characters in its host")
    try:
        host.encode("idna")
    except UnicodeError:
        raise ValueError("must have a host name that IDNA can encode") from None

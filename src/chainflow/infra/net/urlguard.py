"""Keep outbound HTTP off non-public hosts: when a URL is accepted, and again at every connect.

A check when a URL is stored is not enough: its name may resolve elsewhere by the time a
connection is made (DNS rebinding), and workers connect for as long as the URL is stored. So
the guard is also aiohttp's socket factory: every address aiohttp is about to connect to, a
literal one or one its resolver returned, is checked right before the socket is opened.
Reused by every feature that calls user-given URLs (RPC endpoints; webhooks next).
"""

import asyncio
import errno
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohappyeyeballs import AddrInfoType

from chainflow.core.errors import InvalidInput
from chainflow.infra.net.addresses import AddressClass, IpAddress, classify, parse_ip

__all__ = ["ForbiddenAddress", "UrlForbidden", "UrlGuard"]


class UrlForbidden(InvalidInput):
    """A URL whose host is not public; callers re-raise it under their own code."""

    code = "url_forbidden"


class ForbiddenAddress(OSError):
    """Raised instead of connecting; aiohttp reports it as a failed connection."""

    def __init__(self, kind: AddressClass) -> None:
        super().__init__(errno.EACCES, f"connecting to a {kind} address is not allowed")
        self.kind = kind


@dataclass(frozen=True)
class UrlGuard:
    """The rule for one kind of outbound URL; `allow_private` lets every address through."""

    allow_private: bool = False
    resolve_timeout_s: float = 5.0

    def refusal(self, address: IpAddress) -> AddressClass | None:
        """Why this address may not be reached, None if it may."""
        kind = classify(address)
        return None if self.allow_private or kind is AddressClass.PUBLIC else kind

    async def check_url(self, url: str) -> None:
        """Refuse a URL whose host is, or resolves to, a non-public address.

        A name that does not resolve now passes: connecting to it fails anyway, and any
        address it resolves to later is checked at connect time.

        Raises:
            UrlForbidden: the detail names the address class of a literal host only.
        """
        host = urlsplit(url).hostname or ""
        literal = parse_ip(host)
        if literal is not None:
            kind = self.refusal(literal)
            if kind is not None:
                raise UrlForbidden(f"its host is a {kind} address")
            return
        if self.allow_private:
            return
        for address in await self._resolve(host):
            if self.refusal(address) is not None:
                raise UrlForbidden("its host name resolves to a non-public address")

    def socket_factory(self, addr_info: AddrInfoType) -> socket.socket:
        """aiohttp's `socket_factory`: a socket for an allowed address, else ForbiddenAddress."""
        family, type_, proto, _, sockaddr = addr_info
        kind = self.refusal(ipaddress.ip_address(sockaddr[0]))
        if kind is not None:
            raise ForbiddenAddress(kind)
        return socket.socket(family, type_, proto)

    async def _resolve(self, host: str) -> list[IpAddress]:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.resolve_timeout_s):
                infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError, UnicodeError):
            return []
        return [ipaddress.ip_address(info[4][0]) for info in infos]

"""Which IP addresses an outbound request may reach: one table of the non-public ranges.

An explicit table rather than `ipaddress.is_global`, whose answers changed between Python
patch releases (3.11.10, 3.12.4) and which calls multicast "global".
"""

import ipaddress
import socket
from enum import StrEnum

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressClass(StrEnum):
    PUBLIC = "public"
    UNSPECIFIED = "unspecified"
    LOOPBACK = "loopback"
    PRIVATE = "private"
    SHARED = "shared"  # carrier-grade NAT, RFC 6598
    LINK_LOCAL = "link-local"
    UNIQUE_LOCAL = "unique-local"
    MULTICAST = "multicast"
    IPV4_MAPPED = "ipv4-mapped"  # an IPv6 spelling of an IPv4 address (::ffff:a.b.c.d, ::a.b.c.d)
    RESERVED = "reserved"  # documentation, benchmarking, protocol blocks, unallocated, broadcast


def _table(*rows: tuple[str, AddressClass]) -> tuple[tuple[_Network, AddressClass], ...]:
    return tuple((ipaddress.ip_network(cidr), kind) for cidr, kind in rows)


# IANA special-purpose registries (RFC 6890 and updates). The first matching row wins, so the
# single addresses come before the /96 blocks that contain them.
_IPV4 = _table(
    ("0.0.0.0/8", AddressClass.UNSPECIFIED),
    ("10.0.0.0/8", AddressClass.PRIVATE),
    ("100.64.0.0/10", AddressClass.SHARED),
    ("127.0.0.0/8", AddressClass.LOOPBACK),
    ("169.254.0.0/16", AddressClass.LINK_LOCAL),  # cloud metadata: 169.254.169.254
    ("172.16.0.0/12", AddressClass.PRIVATE),
    ("192.0.0.0/24", AddressClass.RESERVED),
    ("192.0.2.0/24", AddressClass.RESERVED),
    ("192.88.99.0/24", AddressClass.RESERVED),
    ("192.168.0.0/16", AddressClass.PRIVATE),
    ("198.18.0.0/15", AddressClass.RESERVED),
    ("198.51.100.0/24", AddressClass.RESERVED),
    ("203.0.113.0/24", AddressClass.RESERVED),
    ("224.0.0.0/4", AddressClass.MULTICAST),
    ("240.0.0.0/4", AddressClass.RESERVED),  # includes the broadcast 255.255.255.255
)
_IPV6 = _table(
    ("::/128", AddressClass.UNSPECIFIED),
    ("::1/128", AddressClass.LOOPBACK),
    ("::ffff:0:0/96", AddressClass.IPV4_MAPPED),
    ("::/96", AddressClass.IPV4_MAPPED),  # IPv4-compatible, deprecated by RFC 4291
    ("fc00::/7", AddressClass.UNIQUE_LOCAL),
    ("fe80::/10", AddressClass.LINK_LOCAL),
    ("fec0::/10", AddressClass.PRIVATE),  # site-local, deprecated by RFC 3879
    ("ff00::/8", AddressClass.MULTICAST),
    ("2001::/23", AddressClass.RESERVED),  # protocol assignments, Teredo among them
    ("2001:db8::/32", AddressClass.RESERVED),
    ("3fff::/20", AddressClass.RESERVED),
)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
# NAT64 (RFC 6052) and 6to4 (RFC 3056) addresses carry an IPv4 address that a gateway reaches.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def classify(address: IpAddress) -> AddressClass:
    """The class of an address; only PUBLIC ones may be reached without an explicit opt-in."""
    if isinstance(address, ipaddress.IPv4Address):
        return _lookup(address, _IPV4)
    unscoped = ipaddress.IPv6Address(int(address))  # a zone id (fe80::1%eth0) plays no part
    embedded = _embedded_ipv4(unscoped)
    if embedded is not None:
        return _lookup(embedded, _IPV4)
    kind = _lookup(unscoped, _IPV6)
    if kind is AddressClass.PUBLIC and unscoped not in _GLOBAL_UNICAST_V6:
        return AddressClass.RESERVED  # outside 2000::/3 nothing is allocated for unicast
    return kind


def _lookup(address: IpAddress, table: tuple[tuple[_Network, AddressClass], ...]) -> AddressClass:
    for network, kind in table:
        if address in network:
            return kind
    return AddressClass.PUBLIC


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def parse_ip(host: str) -> IpAddress | None:
    """The address a URL host names literally, None for a DNS name.

    Besides dotted quads, resolvers take the legacy inet_aton forms (`2130706433`, `0x7f.1`,
    `0177.0.0.1`, `127.1`), so those count as the addresses they name.
    """
    literal = host.removeprefix("[").removesuffix("]")
    try:
        return ipaddress.ip_address(literal)
    except ValueError:
        pass
    if not literal or not all(c.isalnum() or c == "." for c in literal):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(literal))
    except OSError:
        return None

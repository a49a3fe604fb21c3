"""The address table: every class of non-public address, in every spelling a resolver takes."""

import ipaddress

import pytest

from chainflow.infra.net.addresses import AddressClass, classify, parse_ip

C = AddressClass

TABLE = [
    # IPv4
    ("0.0.0.0", C.UNSPECIFIED),  # noqa: S104 - an address under test, not a bind
    ("0.1.2.3", C.UNSPECIFIED),
    ("127.0.0.1", C.LOOPBACK),
    ("127.255.255.254", C.LOOPBACK),
    ("10.0.0.1", C.PRIVATE),
    ("172.16.0.1", C.PRIVATE),
    ("172.31.255.255", C.PRIVATE),
    ("192.168.1.1", C.PRIVATE),
    ("100.64.0.1", C.SHARED),
    ("169.254.169.254", C.LINK_LOCAL),
    ("224.0.0.1", C.MULTICAST),
    ("239.255.255.250", C.MULTICAST),
    ("255.255.255.255", C.RESERVED),
    ("240.0.0.1", C.RESERVED),
    ("192.0.0.8", C.RESERVED),
    ("192.0.2.1", C.RESERVED),
    ("198.18.0.1", C.RESERVED),
    ("198.51.100.1", C.RESERVED),
    ("203.0.113.1", C.RESERVED),
    ("8.8.8.8", C.PUBLIC),
    ("1.1.1.1", C.PUBLIC),
    ("172.32.0.1", C.PUBLIC),  # just past 172.16.0.0/12
    ("100.128.0.1", C.PUBLIC),  # just past 100.64.0.0/10
    # IPv6
    ("::", C.UNSPECIFIED),
    ("::1", C.LOOPBACK),
    ("::ffff:127.0.0.1", C.IPV4_MAPPED),
    ("::ffff:8.8.8.8", C.IPV4_MAPPED),  # refused whatever it maps to
    ("::127.0.0.1", C.IPV4_MAPPED),  # IPv4-compatible
    ("fc00::1", C.UNIQUE_LOCAL),
    ("fd12:3456::1", C.UNIQUE_LOCAL),
    ("fe80::1", C.LINK_LOCAL),
    ("fe80::1%eth0", C.LINK_LOCAL),
    ("fec0::1", C.PRIVATE),
    ("ff02::1", C.MULTICAST),
    ("ff0e::1", C.MULTICAST),
    ("2001:db8::1", C.RESERVED),
    ("2001::1", C.RESERVED),  # Teredo
    ("3fff::1", C.RESERVED),
    ("4000::1", C.RESERVED),  # unallocated: outside 2000::/3
    ("64:ff9b::7f00:1", C.LOOPBACK),  # NAT64 of 127.0.0.1
    ("64:ff9b::a00:1", C.PRIVATE),  # NAT64 of 10.0.0.1
    ("64:ff9b::808:808", C.PUBLIC),  # NAT64 of 8.8.8.8
    ("2002:7f00:1::", C.LOOPBACK),  # 6to4 of 127.0.0.1
    ("2002:c0a8:101::", C.PRIVATE),  # 6to4 of 192.168.1.1
    ("2002:808:808::", C.PUBLIC),
    ("2606:4700:4700::1111", C.PUBLIC),
    ("2a00:1450:4001::1", C.PUBLIC),
]


class TestClassify:
    @pytest.mark.parametrize(("address", "kind"), TABLE)
    def test_table(self, address: str, kind: AddressClass) -> None:
        assert classify(ipaddress.ip_address(address)) is kind

    def test_every_class_is_covered(self) -> None:
        assert {kind for _, kind in TABLE} == set(AddressClass)


class TestParseIp:
    @pytest.mark.parametrize(
        "host",
        ["127.0.0.1", "2130706433", "0x7f000001", "0x7f.1", "0177.0.0.1", "127.1", "127.0.1"],
    )
    def test_legacy_ipv4_forms_name_their_address(self, host: str) -> None:
        assert parse_ip(host) == ipaddress.IPv4Address("127.0.0.1")

    @pytest.mark.parametrize("host", ["[::1]", "::1", "[::ffff:7f00:1]", "fe80::1%eth0"])
    def test_ipv6_literals(self, host: str) -> None:
        assert parse_ip(host) is not None

    @pytest.mark.parametrize(
        "host", ["localhost", "example.com", "mainnet.base.org", "", "127.0.0.1 x", "0x7g.1"]
    )
    def test_names_are_not_literals(self, host: str) -> None:
        assert parse_ip(host) is None

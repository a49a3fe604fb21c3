"""The URL guard: literal hosts, names by what they resolve to, and the connect-time check."""

import socket

import pytest

from chainflow.infra.net.urlguard import ForbiddenAddress, UrlForbidden, UrlGuard

STRICT = UrlGuard(allow_private=False)
OPEN = UrlGuard(allow_private=True)


class TestCheckUrl:
    @pytest.mark.parametrize(
        ("url", "kind"),
        [
            ("http://127.0.0.1:8545", "loopback"),
            ("http://2130706433:6379", "loopback"),
            ("http://0x7f.1/", "loopback"),
            ("https://[::1]:5432/", "loopback"),
            ("http://[::ffff:127.0.0.1]/", "ipv4-mapped"),
            ("http://user:pw@10.0.0.1/rpc?key=1", "private"),
            ("http://169.254.169.254/latest/meta-data/", "link-local"),
            ("http://[fd00::1]/", "unique-local"),
            ("http://[fe80::1%25eth0]/", "link-local"),
            ("http://224.0.0.1/", "multicast"),
            ("http://0.0.0.0:8545", "unspecified"),
        ],
    )
    async def test_literal_hosts_name_their_class(self, url: str, kind: str) -> None:
        with pytest.raises(UrlForbidden, match=f"is a {kind} address"):
            await STRICT.check_url(url)
        await OPEN.check_url(url)

    async def test_a_name_is_refused_for_what_it_resolves_to(self) -> None:
        with pytest.raises(UrlForbidden, match="resolves to a non-public address"):
            await STRICT.check_url("http://localhost:8545")
        await OPEN.check_url("http://localhost:8545")

    async def test_public_literals_and_unresolvable_names_pass(self) -> None:
        # A name that does not resolve fails when connecting; its address is checked then.
        await STRICT.check_url("https://8.8.8.8/")
        await STRICT.check_url("https://[2606:4700:4700::1111]/")
        await STRICT.check_url("https://no-such-host.invalid/")


class TestSocketFactory:
    @pytest.mark.parametrize(
        ("family", "sockaddr"),
        [
            (socket.AF_INET, ("127.0.0.1", 80)),
            (socket.AF_INET, ("10.0.0.1", 80)),
            (socket.AF_INET6, ("::1", 80, 0, 0)),
            (socket.AF_INET6, ("::ffff:127.0.0.1", 80, 0, 0)),
            (socket.AF_INET6, ("fe80::1%lo", 80, 0, 1)),
        ],
    )
    def test_refuses_before_a_socket_exists(
        self, family: socket.AddressFamily, sockaddr: tuple[str | int, ...]
    ) -> None:
        info = (family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)
        with pytest.raises(ForbiddenAddress):
            STRICT.socket_factory(info)
        OPEN.socket_factory(info).close()

    def test_a_public_address_gets_a_socket(self) -> None:
        info = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("8.8.8.8", 443))
        STRICT.socket_factory(info).close()

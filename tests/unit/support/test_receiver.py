"""The tests' webhook receiver holds its port from the moment it binds it (port 0: the OS picks
it), so another process cannot take it before the receiver listens; before, it was picked free,
closed, and bound again at start (a race with every other process on the host)."""

import socket

import aiohttp
import pytest

from tests.support.receiver import Receiver, receiver


async def test_a_bound_receiver_refuses_until_started_and_keeps_its_port() -> None:
    hook = Receiver()
    port = hook.bind()
    try:
        with socket.socket() as other, pytest.raises(OSError, match="in use"):
            other.bind(("127.0.0.1", port))  # held: no one else gets it meanwhile
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        await hook.start()
        assert hook.port == port
        async with aiohttp.ClientSession() as http, http.post(hook.url, data=b"{}") as answer:
            assert answer.status == 200
        assert len(hook.received) == 1
    finally:
        await hook.stop()


async def test_a_receiver_serves_on_the_port_it_bound() -> None:
    async with receiver() as hook:
        assert hook.port != 0
        with socket.socket() as other, pytest.raises(OSError, match="in use"):
            other.bind(("127.0.0.1", hook.port))
        async with aiohttp.ClientSession() as http, http.get(hook.url) as answer:
            assert answer.status == 200

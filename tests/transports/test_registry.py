"""Transports by URL scheme: one table, parsed URLs, and the SSL rule (encrypted schemes need a context,
plain ones refuse one)."""

from __future__ import annotations

import ssl

import pytest

from aiompc.errors import InputError
from aiompc.transports.registry import SCHEMES, Endpoint, open_transport, parse_url, serve_transports


def test_every_scheme_parses_and_prints_back() -> None:
    assert set(SCHEMES) == {"tcp", "tls", "ws", "wss"}
    for scheme in SCHEMES:
        ep = parse_url(f"{scheme}://127.0.0.1:9000/aiompc")
        assert (ep.scheme, ep.host, ep.port) == (scheme, "127.0.0.1", 9000)
        assert ep.secure == (scheme in ("tls", "wss"))
        assert ep.url() == (f"{scheme}://127.0.0.1:9000/aiompc" if scheme.startswith("ws") else
                            f"{scheme}://127.0.0.1:9000")
        assert ep.url(port=1).endswith(":1" + ("/aiompc" if scheme.startswith("ws") else ""))


@pytest.mark.parametrize("url, what", [("http://h:1", "unsupported URL scheme"), ("tcp://:1", "no host"),
                                       ("tcp://h", "no port"), ("tcp://h:99999", "invalid port")])
def test_bad_urls_are_input_errors(url: str, what: str) -> None:
    with pytest.raises(InputError, match=what):
        parse_url(url)


async def test_encrypted_schemes_need_a_context_and_plain_ones_refuse_one() -> None:
    async def handler(transport: object) -> None:  # pragma: no cover - never reached
        pass

    with pytest.raises(InputError, match="needs an ssl.SSLContext"):
        await open_transport(Endpoint("tls", "127.0.0.1", 1), ssl=None, max_message_size=1 << 20)
    with pytest.raises(InputError, match="not encrypted"):
        await serve_transports(handler, Endpoint("ws", "127.0.0.1", 0), ssl=ssl.create_default_context(),
                               max_message_size=1 << 20)


@pytest.mark.parametrize("scheme", ["tcp", "ws"])
async def test_each_plain_scheme_connects_through_the_table(scheme: str) -> None:
    got: list[bytes] = []

    async def echo(transport) -> None:  # type: ignore[no-untyped-def]
        got.append(await transport.recv())
        await transport.send(b"pong")

    server = await serve_transports(echo, parse_url(f"{scheme}://127.0.0.1:0/x"), ssl=None, max_message_size=1 << 20)
    try:
        client = await open_transport(parse_url(Endpoint(scheme, "127.0.0.1", server.port, "/x").url()), ssl=None,
                                      max_message_size=1 << 20)
        await client.send(b"ping")
        assert await client.recv() == b"pong" and got == [b"ping"]
        await client.close()
    finally:
        await server.close()

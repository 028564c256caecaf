"""A byte relay between a TCP address and a Unix domain socket, either way round.

A test host in a network namespace of its own cannot reach the host's loopback, where the local
cluster's services listen; a Unix socket named by a path can be reached from any network namespace.
Two relays carry a port of the test host to a loopback service: one inside the namespace listens on
the test host's address and connects to the socket, one outside listens on the socket and connects
to the service (see tests/support/netns_host.py).

Each relay says `listening on ADDRESS` once it accepts connections and `relaying from PEER` for each
connection, on stderr.

Run: python -m tests.support.relay --listen 10.0.0.2:9400 --to unix:/tmp/relay.sock
     python -m tests.support.relay --listen unix:/tmp/relay.sock --to 127.0.0.1:9400
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
CHUNK = 65536


@dataclass(frozen=True)
class Address:
    """`unix:PATH` or `HOST:PORT` (IPv4)."""

    path: str | None = None
    host: str = ""
    port: int = 0

    @classmethod
    def parse(cls, text: str) -> Address:
        if text.startswith("unix:"):
            return cls(path=text.removeprefix("unix:"))
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise argparse.ArgumentTypeError(f"{text!r} is neither unix:PATH nor HOST:PORT")
        return cls(host=host, port=int(port))

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.path is not None else f"{self.host}:{self.port}"

    async def connect(self) -> Streams:
        if self.path is not None:
            return await asyncio.open_unix_connection(self.path)
        return await asyncio.open_connection(self.host, self.port)

    async def serve(
        self, handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> None:
        if self.path is not None:
            server = await asyncio.start_unix_server(handle, self.path)
        else:
            server = await asyncio.start_server(handle, self.host, self.port)
        print(f"listening on {self}", file=sys.stderr, flush=True)
        async with server:
            await server.serve_forever()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then pass the end on (a half-close, as HTTP/1.0 clients do)."""
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):  # the peer is gone already: nothing left to flush
        await writer.wait_closed()


def relay_to(target: Address) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A connection handler that splices each accepted connection to a new one to `target`."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or "a Unix socket peer"
        print(f"relaying from {peer}", file=sys.stderr, flush=True)
        try:
            upstream_reader, upstream_writer = await target.connect()
        except OSError as exc:
            print(f"cannot reach {target}: {exc}", file=sys.stderr, flush=True)
            await _close(writer)
            return
        try:
            async with asyncio.TaskGroup() as both:
                both.create_task(_pipe(reader, upstream_writer))
                both.create_task(_pipe(upstream_reader, writer))
        except* OSError as reset:
            # One side reset: the other direction is cancelled and both are closed, as a proxy does.
            print(f"connection from {peer} ended: {reset.exceptions[0]}", file=sys.stderr, flush=True)
        finally:
            await _close(upstream_writer)
            await _close(writer)

    return handle


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.relay",
        description="A byte relay between a TCP address and a Unix socket.",
    )
    parser.add_argument("--listen", type=Address.parse, required=True, help="unix:PATH or HOST:PORT")
    parser.add_argument("--to", type=Address.parse, required=True, help="unix:PATH or HOST:PORT")
    args = parser.parse_args(argv)
    asyncio.run(args.listen.serve(relay_to(args.to)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fault injection for storage tests: a Backend wrapper that misbehaves on cue, and a TCP
proxy that breaks real connections to a real server.

These are the only fakes in the storage tests, and they stand in for no feature: they
sit between the code under test and a real backend or server and break things the way
networks do.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path

from core.storage.backend import Backend, ObjectInfo, Payload
from core.storage.retry import TransientError

# What one call may suffer:
#   reset        ConnectionResetError before the call reaches the backend
#   reset-after  the call completes on the backend, then the connection "drops"
#   500          the service answers 500 (a TransientError as a backend raises it)
#   stall        hangs before reaching the backend (until the retry layer's timeout)
#   stall-after  completes on the backend, then hangs (the reply never arrives)
#   short        a read returns fewer bytes than asked
FAULTS = ("reset", "reset-after", "500", "stall", "stall-after", "short")


class FaultyBackend:
    def __init__(
        self,
        inner: Backend,
        *,
        rate: float = 0.0,
        seed: int = 0,
        kinds: tuple[str, ...] = ("reset", "reset-after", "500", "stall", "stall-after", "short"),
    ) -> None:
        self.inner = inner
        self.script: deque[str] = deque()  # faults for the next calls, in order
        self.always: str | None = None  # a fault for every call
        self.rate = rate
        self.kinds = kinds
        self.random = random.Random(seed)
        self.injected: list[tuple[str, str]] = []

    @property
    def location(self) -> str:
        return self.inner.location

    def _next(self, op: str) -> str | None:
        if self.always:
            fault = self.always
        elif self.script:
            fault = self.script.popleft()
        elif self.rate and self.random.random() < self.rate:
            fault = self.random.choice(self.kinds)
        else:
            return None
        if fault == "ok":
            return None
        self.injected.append((op, fault))
        return fault

    async def _before(self, fault: str | None) -> None:
        if fault == "reset":
            raise ConnectionResetError(104, "Connection reset by peer")
        if fault == "500":
            raise TransientError(f"{self.location}: InternalError (HTTP 500)")
        if fault == "stall":
            await asyncio.sleep(3600)

    async def _after(self, fault: str | None) -> None:
        if fault == "reset-after":
            raise ConnectionResetError(104, "Connection reset by peer")
        if fault == "stall-after":
            await asyncio.sleep(3600)

    async def put(self, key: str, data: Payload) -> None:
        fault = self._next("put")
        await self._before(fault)
        await self.inner.put(key, data)
        await self._after(fault)

    async def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        fault = self._next("get")
        await self._before(fault)
        data = await self.inner.get(key, offset, length)
        await self._after(fault)
        if fault == "short" and len(data) > 1:
            if length is None:
                # A whole-object read cut short surfaces as the transport's error (botocore's
                # IncompleteReadError, a closed SFTP channel): the body ended early.
                raise ConnectionResetError(104, "body ended before Content-Length")
            return data[: len(data) // 2]
        return data

    async def stat(self, key: str) -> ObjectInfo:
        fault = self._next("stat")
        await self._before(fault)
        info = await self.inner.stat(key)
        await self._after(fault)
        return info

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        fault = self._next("list")
        await self._before(fault)
        n = 0
        async for info in self.inner.list(prefix):
            yield info
            n += 1
            if fault == "reset-after" and n == 2:
                raise ConnectionResetError(104, "Connection reset by peer")  # mid-listing

    async def delete(self, key: str) -> None:
        fault = self._next("delete")
        await self._before(fault)
        await self.inner.delete(key)
        await self._after(fault)

    async def exists(self) -> bool:
        return await self.inner.exists()

    async def create(self) -> None:
        await self.inner.create()

    async def close(self) -> None:
        await self.inner.close()


class FaultProxy:
    """A TCP proxy to a real server whose next connections fail on cue.

    Modes per connection: "pass"; "reset" (RST as soon as the client sends); "stall"
    (accept, read, never answer); "500" (answer HTTP 500 without forwarding);
    "truncate" (forward, but cut the server's reply short and close).
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.script: deque[str] = deque()
        self.seen: list[str] = []
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self.port = 0

    async def start(self, ssl_context=None) -> None:
        """Listen on a free port; with ``ssl_context`` the proxy terminates TLS (an HTTPS
        front for a plain-HTTP server)."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        mode = self.script.popleft() if self.script else "pass"
        self.seen.append(mode)
        try:
            if mode == "reset":
                await reader.read(1)
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            if mode == "stall":
                while await reader.read(65536):
                    pass
                return
            if mode == "500":
                await reader.readuntil(b"\r\n\r\n")
                body = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
                writer.write(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n"
                    + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
                writer.close()
                return
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            limit = 600 if mode == "truncate" else None

            async def pump(src, dst, cap):
                sent = 0
                try:
                    while data := await src.read(65536):
                        if cap is not None and sent + len(data) > cap:
                            dst.write(data[: cap - sent])
                            await dst.drain()
                            dst.transport.abort()
                            return
                        sent += len(data)
                        dst.write(data)
                        await dst.drain()
                finally:
                    if cap is None:
                        dst.close()

            await asyncio.gather(pump(reader, up_writer, None), pump(up_reader, writer, limit), return_exceptions=True)
            up_writer.close()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a cancelled handler ends quietly: asyncio would log it as an error
        finally:
            writer.close()
            self._tasks.discard(task)


def self_signed_tls(folder) -> tuple[object, Path]:
    """(server SSLContext, CA file) for 127.0.0.1: a throwaway self-signed certificate."""
    import datetime
    import ipaddress
    import ssl
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "axisor test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    folder = Path(folder)
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file

"""Test certificates (trustme) and loopback stream servers for the TLS and TCP checks.

Every server listens on 127.0.0.1:0 and closes all of its connections on exit, so tests
leave no transport behind (warnings are errors).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import pathlib
import ssl
from collections.abc import Awaitable, Callable

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

NAMES = ("localhost", "127.0.0.1")  # what the good leaf is valid for
CA_NAME = "Prober Test CA"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Pki:
    """A private CA written to `ca_file`, and server contexts for the cases under test."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        self.ca = trustme.CA(organization_name=CA_NAME)
        self.ca_file = str(directory / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)

    def leaf(
        self,
        *names: str,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> ssl.SSLContext:
        cert = self.ca.issue_cert(
            *(names or NAMES),
            common_name=(names or NAMES)[0],
            not_before=not_before,
            not_after=not_after,
        )
        return _server_context(cert.configure_cert)

    def valid(self) -> ssl.SSLContext:
        return self.leaf()

    def expiring(self, days: float) -> ssl.SSLContext:
        return self.leaf(not_after=_now() + dt.timedelta(days=days))

    def expired(self) -> ssl.SSLContext:
        now = _now()
        return self.leaf(
            not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1)
        )

    def wrong_host(self) -> ssl.SSLContext:
        return self.leaf("other.invalid")

    def self_signed(self) -> ssl.SSLContext:
        """Valid for localhost and 127.0.0.1, but signed by its own key, not by the CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self-signed.test")])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=90))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        pem = self.directory / "self-signed.pem"
        pem.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return _server_context(lambda ctx: ctx.load_cert_chain(pem))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _server_context(configure: Callable[[ssl.SSLContext], None]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    configure(ctx)
    return ctx


def sni_router(default: ssl.SSLContext, by_name: dict[str, ssl.SSLContext]) -> list[str | None]:
    """Serve `by_name[sni]` when the client sends that SNI, else `default`; returns the SNI log."""
    seen: list[str | None] = []

    def pick(sock: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        seen.append(server_name)
        if server_name in by_name:
            sock.context = by_name[server_name]

    default.sni_callback = pick
    return seen


# --- handlers -------------------------------------------------------------------------


async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read and ignore everything until EOF; never answer (plain: not even a ServerHello)."""
    while await reader.read(65536):
        pass


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


def banner(text: bytes, *, then_close: bool = False) -> Handler:
    """Send `text` on accept; then close, or hold the connection open."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(text)
        await writer.drain()
        if not then_close:
            await hold(reader, writer)

    return handler


def deaf_after_handshake(server_ctx: ssl.SSLContext) -> Handler:
    """Complete the TLS handshake by hand (over a plain server), then read and ignore
    everything: our close_notify is never answered, as with a hostile or broken peer."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = server_ctx.wrap_bio(incoming, outgoing, server_side=True)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                writer.write(outgoing.read())
                data = await reader.read(65536)
                if not data:
                    return
                incoming.write(data)
        writer.write(outgoing.read())
        await hold(reader, writer)

    return handler


# --- servers --------------------------------------------------------------------------


class StreamServer:
    """`async with StreamServer(handler, ssl=ctx) as server:` ... `server.port`."""

    def __init__(self, handler: Handler, *, ssl: ssl.SSLContext | None = None) -> None:
        self._handler = handler
        self._ssl = ssl
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0
        self.accepted = 0

    async def __aenter__(self) -> StreamServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the server is shutting down
        finally:
            writer.close()
            try:
                async with asyncio.timeout(1):
                    await writer.wait_closed()
            except (OSError, TimeoutError, asyncio.CancelledError):
                writer.transport.abort()
            self._tasks.discard(task)

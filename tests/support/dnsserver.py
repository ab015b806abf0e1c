"""A real DNS server on 127.0.0.1 (UDP and TCP on one port) with a programmable zone.

    server = DnsServer()
    server.add("www.example.test", "A", "127.0.0.1")
    server.behave("down.example.test", Behaviour.SERVFAIL)
    async with server: ...   # or the `dns_server` fixture

Names without records answer NXDOMAIN; names with records of other types answer NOERROR
with no data. CNAMEs in the zone are followed, as an authoritative server does. A "wrong
answer" is just a zone whose records differ from what a monitor expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import types
import typing

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset


class Behaviour(enum.Enum):
    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    REFUSED = "refused"
    DROP = "drop"  # never reply, over UDP or TCP
    NODATA = "nodata"  # NOERROR with an empty answer
    TRUNCATE = "truncate"  # UDP replies carry TC and no records; TCP gets the full answer


Key = tuple[dns.name.Name, dns.rdatatype.RdataType]


class DnsServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.zone: dict[Key, list[str]] = {}
        self.behaviours: dict[dns.name.Name, Behaviour] = {}
        self.queries: list[tuple[str, str, str]] = []  # (transport, name, type) as received
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def address(self) -> str:
        """The "IP:PORT" a monitor's `nameservers` entry names."""
        return f"{self.host}:{self.port}"

    def add(self, name: str, rdtype: str, *values: str) -> None:
        key = (dns.name.from_text(name), dns.rdatatype.from_text(rdtype))
        self.zone.setdefault(key, []).extend(values)

    def behave(self, name: str, behaviour: Behaviour) -> None:
        self.behaviours[dns.name.from_text(name)] = behaviour

    def transports(self) -> list[str]:
        return [transport for transport, _, _ in self.queries]

    # -- answering -------------------------------------------------------------------

    def answer(self, wire: bytes, transport: str) -> bytes | None:
        """The reply's wire form, or None to stay silent."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if len(query.question) != 1:
            return None
        question = query.question[0]
        self.queries.append(
            (transport, question.name.to_text(), dns.rdatatype.to_text(question.rdtype))
        )
        behaviour = self.behaviours.get(question.name)
        if behaviour is Behaviour.DROP:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if behaviour is Behaviour.TRUNCATE and transport == "udp":
            response.flags |= dns.flags.TC
        elif behaviour in (Behaviour.NXDOMAIN, Behaviour.SERVFAIL, Behaviour.REFUSED):
            response.set_rcode(dns.rcode.from_text(behaviour.name))
        elif behaviour is not Behaviour.NODATA:
            self._fill(response, question.name, question.rdtype)
        return response.to_wire(max_size=65535)

    def _fill(
        self, response: dns.message.Message, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> None:
        for _ in range(16):
            values = self.zone.get((name, rdtype))
            if values:
                response.answer.append(dns.rrset.from_text_list(name, 300, "IN", rdtype, values))
                return
            cname = self.zone.get((name, dns.rdatatype.CNAME))
            if not cname or rdtype == dns.rdatatype.CNAME:
                break
            response.answer.append(dns.rrset.from_text_list(name, 300, "IN", "CNAME", cname))
            name = dns.name.from_text(cname[0])
        if not any(key[0] == name for key in self.zone):
            response.set_rcode(dns.rcode.NXDOMAIN)

    # -- transports ------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(20):  # UDP and TCP must share a port: retry if TCP finds it taken
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(self.host, 0)
            )
            port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self.host, port)
            except OSError as exc:
                transport.close()
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            self._udp, self.port = transport, port
            return
        raise RuntimeError("no free port for both UDP and TCP")

    async def aclose(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            for writer in self._connections.values():
                writer.close()  # the handler sees EOF and finishes
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._tcp.wait_closed()
        await asyncio.sleep(0)  # let the transports finish closing

    async def __aenter__(self) -> DnsServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                reply = self.answer(await reader.readexactly(size), "tcp")
                if reply is not None:
                    writer.write(len(reply).to_bytes(2, "big") + reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        reply = self.server.answer(data, "udp")
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

"""A loopback DNS server (UDP) for the domain-check tests, built on dnspython's messages.

``zone`` maps ``(name, type)`` to record texts in zone-file syntax (``"10 mx.example"``;
TXT values are given plain and quoted here, split into 255-octet strings). A name with no
record of the asked type answers NOERROR with no records when it has others, else
NXDOMAIN; names in ``servfail`` answer SERVFAIL. ``asked`` lists every question.
"""

from __future__ import annotations

import asyncio
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


def txt(value: str) -> str:
    """A TXT value in zone-file syntax: quoted strings of at most 255 octets."""
    parts = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in parts)


class DnsServer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.zone: dict[tuple[str, str], list[str]] = {}
        self.servfail: set[str] = set()
        self.asked: list[tuple[str, str]] = []
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None

    def add(self, name: str, rdtype: str, *values: str) -> None:
        texts = [txt(v) if rdtype == "TXT" else v for v in values]
        self.zone.setdefault((name.lower().rstrip("."), rdtype), []).extend(texts)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> DnsServer:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0)
        )
        self._transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._transport is not None:
            self._transport.close()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.asked.append((name, rdtype))
        response.flags |= dns.flags.AA
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif (name, rdtype) in self.zone:
            response.answer.append(
                dns.rrset.from_text_list(
                    question.name, 300, dns.rdataclass.IN, rdtype, self.zone[(name, rdtype)]
                )
            )
        elif not any(known == name for known, _ in self.zone):
            response.set_rcode(dns.rcode.NXDOMAIN)
        assert self._transport is not None
        self._transport.sendto(response.to_wire(), addr)

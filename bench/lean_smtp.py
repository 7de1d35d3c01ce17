"""A lean asyncio SMTP client: the "what plain asyncio can do" reference of bench/delivery.py.

Usage: python bench/lean_smtp.py PORT COUNT CONNECTIONS SIZE — prints one JSON line
``{"sent": N, "seconds": S}``. Each connection says EHLO once, then for every message writes
MAIL, RCPT and DATA in one write (PIPELINING), reads the three replies, writes the content
with its final dot and reads the reply. No retries, no bookkeeping, the default event loop:
a lower bound on per-message overhead for a Python client, not a usable mailer.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

HOST = "127.0.0.1"
PARAGRAPH = (
    "Your order has shipped and is on its way. You can follow the parcel with the tracking "
    "link in your account; delivery usually takes two to three working days.\r\n"
)


def message(size: int) -> bytes:
    text = (PARAGRAPH * (size // len(PARAGRAPH) + 1))[: max(size - 200, 64)]
    head = (
        "From: Bench <bench@example.com>\r\nTo: someone@example.com\r\n"
        "Subject: lean reference\r\nMessage-ID: <lean@example.com>\r\n\r\n"
    )
    return (head + text).encode() + b"\r\n.\r\n"


async def reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def lane(port: int, share: int, data: bytes) -> int:
    reader, writer = await asyncio.open_connection(HOST, port)
    await reply(reader)
    writer.write(b"EHLO lean.example.com\r\n")
    await reply(reader)
    envelope = b"MAIL FROM:<bench@example.com>\r\nRCPT TO:<someone@example.com>\r\nDATA\r\n"
    sent = 0
    for _ in range(share):
        writer.write(envelope)
        codes = (await reply(reader), await reply(reader), await reply(reader))
        if codes != (250, 250, 354):
            raise ConnectionError(f"unexpected replies {codes}")
        writer.write(data)
        if await reply(reader) == 250:
            sent += 1
    writer.write(b"QUIT\r\n")
    await reply(reader)
    writer.close()
    return sent


async def run(port: int, count: int, connections: int, size: int) -> dict[str, float]:
    data = message(size)
    base, extra = divmod(count, connections)
    shares = [base + (1 if i < extra else 0) for i in range(connections)]
    started = time.perf_counter()
    sent = await asyncio.wait_for(
        asyncio.gather(*(lane(port, s, data) for s in shares if s)), timeout=300
    )
    return {"sent": sum(sent), "seconds": time.perf_counter() - started}


if __name__ == "__main__":
    port, count, connections, size = (int(a) for a in sys.argv[1:5])
    print(json.dumps(asyncio.run(run(port, count, connections, size))))

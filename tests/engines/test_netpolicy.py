"""The network policy and the guarded dialer: refused destinations never see a connection."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterator

import pytest

from mailgate.errors import ConfigurationError, PolicyViolation
from mailgate.net.guarded import GuardedDialer
from mailgate.net.policy import (
    AddressClass,
    IPAddress,
    NetworkPolicy,
    classify,
    normalise_host,
    parse_ip_literal,
)

PUBLIC_1 = "93.184.215.14"
PUBLIC_2 = "151.101.1.140"


class FakeResolver:
    """Answers from a table and records every question."""

    def __init__(self, answers: dict[str, list[str]] | None = None) -> None:
        self.answers = answers or {}
        self.asked: list[tuple[str, int]] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[host]


class RecordingConnector:
    """Records connection attempts and hands back an unconnected socket."""

    def __init__(self) -> None:
        self.attempts: list[tuple[IPAddress, int]] = []
        self.sockets: list[socket.socket] = []

    async def connect(self, address: IPAddress, port: int) -> socket.socket:
        self.attempts.append((address, port))
        sock = socket.socket()
        self.sockets.append(sock)
        return sock

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def connector() -> Iterator[RecordingConnector]:
    recorder = RecordingConnector()
    yield recorder
    recorder.close()


LOOPBACK_FORMS = [
    "127.0.0.1",
    "127.0.0.1.",
    "2130706433",
    "0x7f000001",
    "0X7F000001",
    "0177.0.0.1",
    "0177.0000.0000.0001",
    "127.1",
    "127.0.1",
    "0x7f.1",
    "0x7f.0.0.0x1",
    "0177.0.0x0.1",
    "::1",
    "[::1]",
    "0:0:0:0:0:0:0:1",
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "[::ffff:127.0.0.1]",
    "::127.0.0.1",
    "64:ff9b::127.0.0.1",
    "2002:7f00:1::1",
]

ALWAYS_REFUSED_FORMS = [
    "169.254.169.254",
    "0xa9fea9fe",
    "2852039166",
    "169.254.1.1",
    "fe80::1",
    "fe80::1%eth0",
    "fd00:ec2::254",
    "::ffff:169.254.169.254",
    "0.0.0.0",
    "0",
    "0x0",
    "::",
    "255.255.255.255",
    "0xffffffff",
    "224.0.0.1",
    "ff02::1",
    "240.0.0.1",
    "192.0.2.10",
    "2001:db8::1",
    "100.100.100.200",
]

PRIVATE_FORMS = [
    "10.0.0.1",
    "012.0.0.1",
    "167772161",
    "172.16.5.4",
    "192.168.1.1",
    "0xc0a80101",
    "100.64.0.1",
    "fd12:3456::1",
    "::ffff:10.0.0.1",
    "::ffff:192.168.0.1",
]

MALFORMED_HOSTS = ["1.2.3.4.5", "08.0.0.1", "256.0.0.1", "127.0.0.1 x", "", "a..b", "::zz"]


@pytest.mark.parametrize("host", LOOPBACK_FORMS + ALWAYS_REFUSED_FORMS + PRIVATE_FORMS)
async def test_internal_literals_are_refused_without_any_attempt(
    host: str, connector: RecordingConnector
) -> None:
    resolver = FakeResolver()
    dialer = GuardedDialer(NetworkPolicy(), resolver=resolver, connector=connector)
    with pytest.raises(PolicyViolation) as caught:
        await dialer.connect(host, 587, timeout=5)
    assert caught.value.code == "destination_refused"
    assert connector.attempts == []
    assert resolver.asked == []  # literals are parsed here, never by the resolver


@pytest.mark.parametrize("host", MALFORMED_HOSTS)
async def test_malformed_hosts_are_refused(host: str, connector: RecordingConnector) -> None:
    resolver = FakeResolver()
    dialer = GuardedDialer(NetworkPolicy(), resolver=resolver, connector=connector)
    with pytest.raises(PolicyViolation):
        await dialer.connect(host, 587, timeout=5)
    assert connector.attempts == []
    assert resolver.asked == []


@pytest.mark.parametrize("host", LOOPBACK_FORMS)
def test_loopback_forms_are_recognised(host: str) -> None:
    address = parse_ip_literal(host)
    assert address is not None
    assert classify(address) is AddressClass.LOOPBACK


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        (PUBLIC_1, AddressClass.PUBLIC),
        ("8.8.8.8", AddressClass.PUBLIC),
        ("2606:4700:4700::1111", AddressClass.PUBLIC),
        ("::ffff:8.8.8.8", AddressClass.PUBLIC),
        ("2002:808:808::1", AddressClass.PUBLIC),
        ("169.254.169.254", AddressClass.METADATA),
        ("169.254.0.1", AddressClass.LINK_LOCAL),
        ("100.64.0.1", AddressClass.SHARED),
        ("255.255.255.255", AddressClass.BROADCAST),
        ("0.0.0.0", AddressClass.UNSPECIFIED),
        ("::", AddressClass.UNSPECIFIED),
        ("0.1.2.3", AddressClass.RESERVED),
        ("239.255.255.250", AddressClass.MULTICAST),
        ("fc00::1", AddressClass.PRIVATE),
        ("fec0::1", AddressClass.RESERVED),
        ("4000::1", AddressClass.RESERVED),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", AddressClass.RESERVED),  # Teredo to 192.0.2.45
        ("2001:0:808:808:8000:63bf:f7fe:fefe", AddressClass.PUBLIC),  # Teredo, public ends
    ],
)
def test_classify(address: str, kind: AddressClass) -> None:
    assert classify(ipaddress.ip_address(address)) is kind


def test_normalise_host() -> None:
    assert normalise_host("SMTP.Example.COM.") == "smtp.example.com"
    assert normalise_host("bücher.example") == "xn--bcher-kva.example"
    assert normalise_host("0x7f.1") == ipaddress.IPv4Address("127.0.0.1")
    assert normalise_host("smtp.example.com\r\nRCPT") is None


async def test_every_resolved_address_is_checked(connector: RecordingConnector) -> None:
    resolver = FakeResolver({"rebind.example": [PUBLIC_1, "127.0.0.1"]})
    dialer = GuardedDialer(NetworkPolicy(), resolver=resolver, connector=connector)
    with pytest.raises(PolicyViolation) as caught:
        await dialer.connect("rebind.example", 587, timeout=5)
    assert caught.value.code == "destination_refused"
    assert connector.attempts == []


@pytest.mark.parametrize("internal", ["10.1.2.3", "::ffff:127.0.0.1", "fe80::1%2", "not-an-ip"])
async def test_refusal_message_does_not_say_which_address(
    internal: str, connector: RecordingConnector
) -> None:
    policy = NetworkPolicy()
    resolver = FakeResolver({"mixed.example": [PUBLIC_1, internal], "bad.example": ["0.0.0.0"]})
    dialer = GuardedDialer(policy, resolver=resolver, connector=connector)
    with pytest.raises(PolicyViolation) as first:
        await dialer.connect("mixed.example", 587, timeout=5)
    with pytest.raises(PolicyViolation) as second:
        await dialer.connect("bad.example", 587, timeout=5)
    assert str(first.value) == str(second.value)
    assert internal not in str(first.value)
    assert PUBLIC_1 not in str(first.value)
    assert connector.attempts == []


async def test_connection_is_pinned_to_the_first_checked_address(
    connector: RecordingConnector,
) -> None:
    resolver = FakeResolver({"smtp.example.com": [PUBLIC_1, PUBLIC_2]})
    dialer = GuardedDialer(NetworkPolicy(), resolver=resolver, connector=connector)
    await dialer.connect("SMTP.example.com", 587, timeout=5)
    assert connector.attempts == [(ipaddress.ip_address(PUBLIC_1), 587)]
    assert resolver.asked == [("smtp.example.com", 587)]


async def test_port_25_is_refused_with_the_reason(connector: RecordingConnector) -> None:
    resolver = FakeResolver({"smtp.example.com": [PUBLIC_1]})
    dialer = GuardedDialer(NetworkPolicy(), resolver=resolver, connector=connector)
    with pytest.raises(PolicyViolation) as caught:
        await dialer.connect("smtp.example.com", 25, timeout=5)
    assert caught.value.code == "port_25_refused"
    assert "MAILGATE_ALLOW_PORT_25" in str(caught.value)
    assert "reputation" in str(caught.value)
    assert resolver.asked == []
    assert connector.attempts == []


async def test_port_25_allowed_by_the_instance(connector: RecordingConnector) -> None:
    resolver = FakeResolver({"smtp.example.com": [PUBLIC_1]})
    dialer = GuardedDialer(
        NetworkPolicy(allow_port_25=True), resolver=resolver, connector=connector
    )
    await dialer.connect("smtp.example.com", 25, timeout=5)
    assert connector.attempts == [(ipaddress.ip_address(PUBLIC_1), 25)]


def test_default_policy_refuses_loopback() -> None:
    with pytest.raises(PolicyViolation):
        NetworkPolicy().check_address("127.0.0.1", 2525)


@pytest.mark.parametrize(
    ("allowed", "address", "port", "ok"),
    [
        (["127.0.0.0/8"], "127.0.0.1", 2525, True),
        (["127.0.0.0/8"], "127.9.9.9", 587, True),
        (["127.0.0.0/8"], "::ffff:127.0.0.1", 587, True),
        (["127.0.0.0/8"], "::1", 587, False),
        (["127.0.0.1:2525"], "127.0.0.1", 2525, True),
        (["127.0.0.1:2525"], "127.0.0.1", 2526, False),
        (["127.0.0.1:2525"], "127.0.0.2", 2525, False),
        (["[::1]:2525"], "::1", 2525, True),
        (["10.0.0.0/8", "192.168.0.0/16"], "192.168.7.7", 587, True),
        (["10.0.0.0/8"], "172.16.0.1", 587, False),
        (["0.0.0.0/0"], "10.0.0.1", 587, True),
        (["0.0.0.0/0"], "169.254.169.254", 80, False),
        (["169.254.0.0/16"], "169.254.1.1", 587, False),
        (["169.254.169.254:80"], "169.254.169.254", 80, False),
        (["::/0"], "fe80::1", 587, False),
    ],
)
def test_allow_list(allowed: list[str], address: str, port: int, ok: bool) -> None:
    policy = NetworkPolicy(allowed)
    if ok:
        assert policy.check_address(address, port) == ipaddress.ip_address(address)
    else:
        with pytest.raises(PolicyViolation):
            policy.check_address(address, port)


async def test_host_port_entry_allows_that_name_and_port_only(
    connector: RecordingConnector,
) -> None:
    resolver = FakeResolver({"smtp.internal": ["10.0.0.5"], "other.internal": ["10.0.0.5"]})
    policy = NetworkPolicy(["smtp.internal:587"])
    dialer = GuardedDialer(policy, resolver=resolver, connector=connector)
    await dialer.connect("SMTP.internal.", 587, timeout=5)
    assert connector.attempts == [(ipaddress.ip_address("10.0.0.5"), 587)]
    for host, port in [("smtp.internal", 465), ("other.internal", 587)]:
        with pytest.raises(PolicyViolation):
            await dialer.connect(host, port, timeout=5)
    assert len(connector.attempts) == 1


@pytest.mark.parametrize("entry", ["smtp.internal", "10.0.0.0/33", "host:0", "host:99999", ":25"])
def test_invalid_allow_entries(entry: str) -> None:
    with pytest.raises(ConfigurationError):
        NetworkPolicy([entry])


async def test_unresolvable_name(connector: RecordingConnector) -> None:
    dialer = GuardedDialer(
        NetworkPolicy(), resolver=FakeResolver({"empty.example": []}), connector=connector
    )
    for host in ["nowhere.example", "empty.example"]:
        with pytest.raises(socket.gaierror):
            await dialer.connect(host, 587, timeout=5)
    assert connector.attempts == []


async def test_resolution_counts_against_the_timeout(connector: RecordingConnector) -> None:
    class SlowResolver:
        async def resolve(self, host: str, port: int) -> list[str]:
            await asyncio.sleep(10)
            return [PUBLIC_1]

    dialer = GuardedDialer(NetworkPolicy(), resolver=SlowResolver(), connector=connector)
    with pytest.raises(TimeoutError):
        await dialer.connect("slow.example", 587, timeout=0.05)
    assert connector.attempts == []


async def test_real_loopback_connection_when_allowed() -> None:
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.readexactly(5))
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(PolicyViolation):
            await GuardedDialer(NetworkPolicy()).connect("127.0.0.1", port, timeout=5)
        dialer = GuardedDialer(NetworkPolicy([f"127.0.0.1:{port}"]))
        sock = await dialer.connect("127.0.0.1", port, timeout=5)
        assert sock.getpeername() == ("127.0.0.1", port)
        _, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"hello")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.01)
        assert received == [b"hello"]
    finally:
        server.close()
        await server.wait_closed()

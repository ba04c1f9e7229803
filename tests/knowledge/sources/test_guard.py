"""The address guard, alone and inside the fetcher: what it refuses, on every hop, and that
the address it checked is the one connected to."""

from __future__ import annotations

import ipaddress

import pytest

from copines.knowledge.sources.guard import AddressGuard, AddressRefused, Unresolvable, why_refused
from copines.knowledge.sources.http import Fetcher, FetchError
from tests.fakes.site import FakeSite, page

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "::1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.20",
    "169.254.169.254",  # cloud metadata
    "fd00:ec2::254",  # AWS metadata over IPv6
    "fe80::1",
    "fec0::1",  # site-local (deprecated): Python calls it global
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "64:ff9b::a9fe:a9fe",  # NAT64 form of 169.254.169.254
    "2002:a9fe:a9fe::1",  # 6to4 form of it
    "0.0.0.0",
    "::",
    "224.0.0.1",
    "ff02::1",
    "100.64.0.1",  # carrier-grade NAT
    "240.0.0.1",
    "192.0.2.10",  # documentation
]
PUBLIC = ["93.184.216.34", "151.101.1.69", "2606:4700:4700::1111", "2a00:1450:4007:80f::200e"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address: str):
    ip = ipaddress.ip_address(address)
    assert why_refused(ip)
    with pytest.raises(AddressRefused, match="COPINES_FETCH_ALLOW_NETWORKS"):
        AddressGuard().check(ip)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str):
    assert why_refused(ipaddress.ip_address(address)) is None
    AddressGuard().check(ipaddress.ip_address(address))


def test_an_allowed_network_lets_only_itself_through():
    guard = AddressGuard(["127.0.0.1/32"])
    guard.check(ipaddress.ip_address("127.0.0.1"))
    guard.check(ipaddress.ip_address("::ffff:127.0.0.1"))  # the same address, mapped
    for other in ("127.0.0.2", "::1", "169.254.169.254", "10.0.0.1"):
        with pytest.raises(AddressRefused):
            guard.check(ipaddress.ip_address(other))


def resolver(*answers: list[str]):
    """A resolver giving each answer in turn (the last one again), counting its calls."""
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[min(len(calls), len(answers)) - 1]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


async def test_one_bad_answer_among_the_resolved_addresses_refuses_the_name():
    guard = AddressGuard(resolver=resolver(["93.184.216.34", "10.0.0.7"]))
    with pytest.raises(AddressRefused, match="rebind.test: refused: 10.0.0.7 is a private"):
        await guard.address_for("rebind.test", 80)
    guard = AddressGuard(resolver=resolver(["93.184.216.34"]))
    assert await guard.address_for("public.test", 443) == "93.184.216.34"


async def test_literal_addresses_are_checked_without_resolving():
    calls = resolver(["93.184.216.34"])
    guard = AddressGuard(resolver=calls)
    with pytest.raises(AddressRefused, match="link-local"):
        await guard.address_for("169.254.169.254", 80)
    with pytest.raises(AddressRefused, match="loopback"):
        await guard.address_for("[::ffff:127.0.0.1]", 80)
    assert calls.calls == []


async def test_an_unresolvable_name_is_reported():
    async def fails(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(Unresolvable, match="cannot resolve nowhere.invalid"):
        await AddressGuard(resolver=fails).address_for("nowhere.invalid", 80)


def fetcher(guard: AddressGuard, **kw) -> Fetcher:
    return Fetcher(user_agent="copines-test/1.0", delay=0, guard=guard, **kw)


@pytest.fixture
def site():
    with FakeSite() as server:
        server.pages["/blog/hooks"] = page("Hooks", ("Accroche", "Trois secondes."))
        yield server


async def test_the_fetcher_refuses_loopback_by_default(site: FakeSite):
    client = fetcher(AddressGuard())
    try:
        with pytest.raises(FetchError, match="127.0.0.1 is a loopback address"):
            await client.get(f"{site.url}/blog/hooks")
    finally:
        await client.aclose()
    assert site.requests == []


async def test_every_redirect_hop_is_checked(site: FakeSite):
    client = fetcher(AddressGuard(["127.0.0.1/32"]))
    try:
        with pytest.raises(FetchError, match="169.254.169.254 is a link-local"):
            await client.get(f"{site.url}/to-metadata")
    finally:
        await client.aclose()
    assert site.paths() == ["/to-metadata"]


async def test_the_checked_address_is_the_one_connected_to(site: FakeSite):
    # The name answers a loopback address (allowed here) the first time and a private one
    # afterwards: a client that resolved again when connecting would reach the second.
    names = resolver(["127.0.0.1"], ["10.9.9.9"])
    client = fetcher(AddressGuard(["127.0.0.1/32"], resolver=names))
    try:
        fetched = await client.get(f"http://copines-site.test:{site.port}/blog/hooks")
        assert fetched.status == 200 and b"Trois secondes" in fetched.content
        assert names.calls == ["copines-site.test"]
        assert site.requests[-1].headers["Host"] == f"copines-site.test:{site.port}"
        assert site.requests[-1].headers["User-Agent"] == "copines-test/1.0"
        with pytest.raises(FetchError, match="10.9.9.9 is a private address"):
            await client.get(f"http://copines-site.test:{site.port}/blog/hooks")
    finally:
        await client.aclose()
    assert len(site.requests) == 1


async def test_loops_huge_and_slow_answers_end_with_a_clear_error(site: FakeSite):
    site.slow_seconds = 3
    client = fetcher(AddressGuard(["127.0.0.1/32"]), timeout=0.5, max_bytes=200_000)
    try:
        with pytest.raises(FetchError, match="redirect loop: .*/loop-a -> .*/loop-b -> .*/loop-a"):
            await client.get(f"{site.url}/loop-a")
        with pytest.raises(FetchError, match="too large: .* over 200000 bytes"):
            await client.get(f"{site.url}/huge")
        with pytest.raises(FetchError, match="timed out after 0.5 s"):
            await client.get(f"{site.url}/slow")
    finally:
        await client.aclose()


async def test_an_unreachable_host_is_reported():
    # A port nobody listens on: connection refused.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = fetcher(AddressGuard(["127.0.0.1/32"]), connect_timeout=1)
    try:
        with pytest.raises(FetchError, match="unreachable host"):
            await client.get(f"http://127.0.0.1:{port}/")
    finally:
        await client.aclose()


def tls_pair(tmp_path, name: str):
    """(server context, client context): a certificate for `name` and a client trusting it."""
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


async def test_https_goes_to_the_checked_address_with_the_name_in_tls(tmp_path):
    # The certificate names copines-site.test only: the connection goes to 127.0.0.1, and TLS
    # (SNI, certificate check) still uses the name.
    server_tls, client_tls = tls_pair(tmp_path, "copines-site.test")
    with FakeSite(ssl_context=server_tls) as site:
        site.pages["/blog/hooks"] = page("Hooks", ("Accroche", "Trois secondes."))
        names = resolver(["127.0.0.1"])
        client = Fetcher(
            user_agent="copines-test/1.0",
            guard=AddressGuard(["127.0.0.1/32"], resolver=names),
            verify=client_tls,
        )
        try:
            fetched = await client.get(f"https://copines-site.test:{site.port}/blog/hooks")
            assert fetched.status == 200 and b"Trois secondes" in fetched.content
            with pytest.raises(FetchError, match="certificate|hostname|CERTIFICATE"):
                await client.get(f"https://other-name.test:{site.port}/blog/hooks")
        finally:
            await client.aclose()
        assert names.calls == ["copines-site.test", "other-name.test"]

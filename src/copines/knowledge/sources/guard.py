"""The address guard: a fetch reaches only public addresses, checked after DNS resolution.

Loopback, private, link-local (with the cloud metadata address 169.254.169.254), site-local
(fec0::/10), shared, multicast and reserved addresses are refused, and so are IPv6 forms that
carry one of them (IPv4-mapped ::ffff:a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16), unless a
network is allowed by setting. Every address a name resolves to must pass: one bad answer
refuses the name. The address checked is the one connected to (see `http.Fetcher`), so a second
resolution (DNS rebinding) cannot swap it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable

from copines.errors import CopinesError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class AddressRefused(CopinesError):
    """The address is not one a fetch may reach."""


class Unresolvable(CopinesError):
    """The host name does not resolve."""


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host`."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, NAT64, 6to4), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def why_refused(ip: IPAddress) -> str | None:
    """Why a fetch may not reach `ip`, or None for a public address."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        reason = why_refused(inner)
        return f"{reason} (inside {ip})" if reason else None
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        # fec0::/10, deprecated but still routed inside some networks; Python counts it global.
        return "a site-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or not ip.is_global:
        return "a reserved, non-public address"
    return None


class AddressGuard:
    """Resolves a host once and returns the one address to connect to, or refuses."""

    def __init__(self, allow_networks: Iterable[str] = (), resolver: Resolver | None = None):
        self.allowed: list[Network] = [
            ipaddress.ip_network(n.strip(), strict=False) for n in allow_networks if n.strip()
        ]
        self.resolver = resolver or system_resolve

    def check(self, ip: IPAddress) -> None:
        """Raises AddressRefused unless `ip` is public or in an allowed network."""
        if any(ip.version == net.version and ip in net for net in self.allowed):
            return
        inner = embedded_ipv4(ip)
        if inner is not None and any(inner in n for n in self.allowed if n.version == 4):
            return
        reason = why_refused(ip)
        if reason:
            raise AddressRefused(
                f"refused: {ip} is {reason}; set COPINES_FETCH_ALLOW_NETWORKS to allow it"
            )

    async def address_for(self, host: str, port: int) -> str:
        """The checked address to connect to for `host` (a name or a literal address)."""
        literal = host.strip("[]")
        try:
            ip = ipaddress.ip_address(literal)
        except ValueError:
            pass
        else:
            self.check(ip)
            return str(ip)
        try:
            answers = await self.resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise Unresolvable(f"unreachable host: cannot resolve {host} ({exc})") from exc
        if not answers:
            raise Unresolvable(f"unreachable host: {host} resolves to no address")
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in answers]
        for address in addresses:
            try:
                self.check(address)
            except AddressRefused as exc:
                raise AddressRefused(f"{host}: {exc}") from None
        return str(addresses[0])

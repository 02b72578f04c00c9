"""Is a URL's host public? One normalising check, for a webhook's submission and its delivery.

A host is first brought to the addresses it means, the way the resolver will read it: a
trailing dot dropped (`localhost.`), IPv4 in any form the C library accepts (`127.1`,
`2130706433`, `0x7f000001`, `0177.0.0.1`, `0`), the names of loopback (`ip6-localhost`),
then DNS. Every address must be public.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

from portal.errors import InvalidInput

MAX_URL_LENGTH = 500  # Batch.webhook's column
# Names of loopback in /etc/hosts on common systems, whether or not this machine lists them.
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def check_public_url(url: str, *, field: str = "webhook", must_resolve: bool = False) -> None:
    """Refuse a non-HTTP(S) URL, or one whose host is (or resolves to) a non-public address.

    `must_resolve`: at delivery a name that does not resolve is refused too. At submission it
    is accepted (DNS may be down for a moment): delivery resolves it again, and checks again.
    """
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"'{field}' must be at most {MAX_URL_LENGTH} characters; got {len(url)}.", field=field)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError as exc:  # a bad port or bracketed address
        raise InvalidInput(f"'{field}' is not a valid URL: {exc}.", field=field) from exc
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidInput(f"'{field}' must be an http(s) URL with a host name.", field=field)
    if settings.WEBHOOK_ALLOW_PRIVATE:
        return
    addresses = host_addresses(host, port or (443 if parts.scheme == "https" else 80))
    if addresses is None:
        if must_resolve:
            raise InvalidInput(f"'{field}' host {host} does not resolve.", field=field)
        return
    if not addresses or not all(is_public(a) for a in addresses):
        raise InvalidInput(
            f"'{field}' must point to a public address; loopback, link-local and private ranges are refused.",
            field=field,
        )


def host_addresses(host: str, port: int) -> list[Address] | None:
    """The addresses `host` stands for (an empty list: none usable), or None if a name does not resolve."""
    name = host.lower().rstrip(".")
    literal = _literal(name)
    if literal is not None:
        return [literal]
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return [ipaddress.ip_address("127.0.0.1")]
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    addresses = []
    for info in infos:
        # sockaddr[0] is the address string for AF_INET/AF_INET6 (stubs say str | int)
        parsed = _literal(str(info[4][0]))
        if parsed is not None:
            addresses.append(parsed)
    return addresses


def _literal(name: str) -> Address | None:
    """`name` as an IP address, reading IPv4 as inet_aton does (short, hex, octal, one integer)."""
    try:
        return ipaddress.ip_address(name.split("%", 1)[0])  # an IPv6 zone does not change the address
    except ValueError:
        pass
    if not name or not all(c in "0123456789abcdefx." for c in name) or not name[0].isdigit():
        return None  # a name: inet_aton would also read "1e3" or "0x" oddly; only digit-led forms here
    try:
        return ipaddress.IPv4Address(socket.inet_aton(name))
    except OSError:
        return None


def is_public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast

"""Which custom S3 endpoints the broker may talk to, and talking only to the address checked.

A tenant admin chooses `endpoint_url`; without limits the broker's self-check and HeadObject
would reach whatever that names (the loopback, the private network, a cloud's metadata
service) and report what answered: a port scanner inside the broker's network. So:

- the URL must be https, unless the operator allows the host
  (`BUCKETREEL_ALLOWED_ENDPOINT_HOSTS`) or the broker runs in development mode;
- the host must resolve, and every address it resolves to must be a public unicast address
  (no loopback, private, link-local, CGNAT, multicast, unspecified, reserved or metadata
  address, in IPv4 or IPv6, including IPv4 inside IPv6: v4-mapped, 6to4, Teredo, NAT64),
  unless the operator allows the host; development mode allows the loopback;
- the broker resolves once, checks, and then connects to that very address (`pin`): a DNS
  answer that changes between the check and the connection (rebinding) is never used. TLS
  still verifies the certificate for the host name, and the `Host` header keeps it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from botocore.awsrequest import AWSHTTPConnection, AWSHTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import connection

from broker.errors import InvalidInput
from broker.settings import parse_allowed_hosts
from shared.errors import ErrorCode

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_DEFAULT_PORTS = {"https": 443, "http": 80}


class EndpointRefused(InvalidInput):
    """The endpoint URL names a host the broker will not connect to."""

    code = ErrorCode.INVALID_FIELD


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (the system resolver; IP literals pass through)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def why_not_public(address: Address) -> str | None:
    """Why the broker must not connect to `address` by default, or None for a public one."""
    if address in _METADATA:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_v4(address)
        if inner is not None:
            why = why_not_public(inner)
            return None if why is None else f"{why} (inside an IPv6 address)"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a carrier-grade NAT (100.64.0.0/10) address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved address"
    return None


@dataclass(frozen=True, slots=True)
class PinnedEndpoint:
    """An endpoint URL whose host was resolved and checked: connect to `address` only."""

    url: str
    host: str  # lower case, without brackets
    port: int
    address: str
    trusted: bool = False  # the operator allows the host: its replies are shown in full


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointPolicy:
    """The operator's rules for tenants' custom endpoints (see the module docstring)."""

    allowed_hosts: frozenset[str] = frozenset()  # "host" (any port) or "host:port", lower
    dev_mode: bool = False
    resolver: Resolver = system_resolver

    @classmethod
    def from_setting(cls, raw: str, *, dev_mode: bool) -> EndpointPolicy:
        return cls(allowed_hosts=parse_allowed_hosts(raw), dev_mode=dev_mode)

    def allows_host(self, host: str, port: int) -> bool:
        host = host.lower().rstrip(".")
        named = f"[{host}]" if ":" in host else host
        return named in self.allowed_hosts or f"{named}:{port}" in self.allowed_hosts

    def check_url(self, url: str) -> tuple[SplitResult, str, int]:
        """The URL's parts, host and port, when its form is acceptable (no DNS yet)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise EndpointRefused("endpoint_url is not a valid URL") from None
        host = (parts.hostname or "").lower().rstrip(".")
        if (
            parts.scheme not in _DEFAULT_PORTS or not host or parts.query or parts.fragment
            or parts.username is not None or parts.password is not None
        ):
            raise EndpointRefused(
                "endpoint_url must be an https URL with a host, without user, query or fragment"
            )
        port = port if port is not None else _DEFAULT_PORTS[parts.scheme]
        if parts.scheme == "http" and not (self.dev_mode or self.allows_host(host, port)):
            raise EndpointRefused(
                "endpoint_url must use https (plain http only for hosts the operator allows "
                "in BUCKETREEL_ALLOWED_ENDPOINT_HOSTS)"
            )
        return parts, host, port

    def resolve(self, url: str) -> PinnedEndpoint:
        """Resolve the URL's host once and check every address; blocking (DNS): call it
        from a worker thread."""
        _, host, port = self.check_url(url)
        try:
            literal: Address | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        # For a name, one message whether it does not resolve or resolves inside: the broker
        # is no oracle of what internal names exist.
        hidden = EndpointRefused(
            f"endpoint_url: the host {host!r} does not resolve to a public address; the "
            "broker connects elsewhere only to hosts the operator allows in "
            "BUCKETREEL_ALLOWED_ENDPOINT_HOSTS"
        )
        try:
            found = self.resolver(host, port)
        except (OSError, UnicodeError):
            found = []
        if not found:
            raise hidden
        allowed = self.allows_host(host, port)
        addresses: list[Address] = []
        for text in found:
            try:
                address = ipaddress.ip_address(text.split("%", 1)[0])
            except ValueError:
                raise hidden from None
            addresses.append(address)
            why = why_not_public(address)
            if why is None or allowed or (self.dev_mode and why.startswith("a loopback")):
                continue
            if literal is None:
                raise hidden
            raise EndpointRefused(
                f"endpoint_url: {host} is {why}; the broker does not connect there unless "
                "the operator allows the host in BUCKETREEL_ALLOWED_ENDPOINT_HOSTS"
            )
        return PinnedEndpoint(
            url=url, host=host, port=port, address=str(addresses[0]), trusted=allowed
        )


def _pinned_connection(base: type[Any], pinned: PinnedEndpoint) -> type[Any]:
    """`base` (botocore's connection class) that opens its socket to the checked address
    only, and refuses any other host (a redirect, a proxy): nothing is resolved again."""

    def _new_conn(self: Any) -> socket.socket:
        if self.host.lower() != pinned.host or self.port != pinned.port:
            raise NewConnectionError(self, "refused: not the endpoint that was checked")
        try:
            return connection.create_connection(
                (pinned.address, pinned.port), self.timeout,
                source_address=self.source_address, socket_options=self.socket_options,
            )
        except TimeoutError as exc:
            raise ConnectTimeoutError(self, "the endpoint did not accept in time") from exc
        except OSError as exc:
            raise NewConnectionError(self, f"could not connect: {exc.strerror}") from exc

    return type(f"Pinned{base.__name__}", (base,), {"_new_conn": _new_conn})


def pin(client: Any, pinned: PinnedEndpoint) -> None:
    """Make a botocore client connect to `pinned.address` for `pinned.host`, and nowhere
    else. botocore has no setting for this: its HTTP session (`URLLib3Session`) keeps the
    urllib3 pool classes in one mapping that its pool managers share, which is replaced
    here with pools whose connections open their socket to the checked address."""
    session = client._endpoint.http_session
    pools: dict[str, type[Any]] = {
        "http": type("PinnedHTTPPool", (HTTPConnectionPool,), {
            "ConnectionCls": _pinned_connection(AWSHTTPConnection, pinned),
        }),
        "https": type("PinnedHTTPSPool", (HTTPSConnectionPool,), {
            "ConnectionCls": _pinned_connection(AWSHTTPSConnection, pinned),
        }),
    }
    session._pool_classes_by_scheme.clear()
    session._pool_classes_by_scheme.update(pools)
    session._manager.pool_classes_by_scheme = session._pool_classes_by_scheme
    session._manager.clear()

"""Who the client is: the peer address, or what a trusted reverse proxy says it is.

X-Forwarded-For and X-Real-IP are believed only when the TCP peer is one of
`server.trusted_proxies`; from anyone else they are ignored, so a client cannot pick its
own rate-limit bucket by sending a header.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[::1]:1234"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "1.2.3.4:1234"
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class ClientAddress:
    """Resolve the client IP of a request, trusting forwarding headers from proxies only."""

    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        networks: list[Network] = []
        for entry in trusted_proxies:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ValueError(
                    f"server.trusted_proxies: {entry!r} is not an IP address or CIDR"
                ) from None
        self.networks = networks

    def trusted(self, address: str) -> bool:
        """Whether `address` is one of the trusted proxies."""
        ip = _ip(address)
        return ip is not None and any(ip in net for net in self.networks)

    def __call__(self, scope: Scope) -> str:
        """The client's IP (as text) for this request."""
        client = scope.get("client")
        peer = str(client[0]) if client else "unknown"
        if not self.networks or not self.trusted(peer):
            return peer
        headers = {}
        for key, value in scope.get("headers", ()):
            name = key.decode("latin-1").lower()
            if name in ("x-forwarded-for", "x-real-ip"):
                previous = headers.get(name)
                headers[name] = f"{previous},{value.decode('latin-1')}" if previous else value.decode("latin-1")
        forwarded = headers.get("x-forwarded-for")
        if forwarded:
            # Walk from the nearest hop back; the first one we do not trust is the client.
            # Hops further left were written by the client itself and prove nothing.
            hops = [h for h in forwarded.split(",") if h.strip()]
            for hop in reversed(hops):
                ip = _ip(hop)
                if ip is None:
                    break
                if not any(ip in net for net in self.networks):
                    return str(ip)
            else:
                first = _ip(hops[0]) if hops else None
                if first is not None:
                    return str(first)
            return peer
        real = _ip(headers.get("x-real-ip", ""))
        return str(real) if real is not None else peer

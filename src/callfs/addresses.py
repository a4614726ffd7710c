"""Client addresses (for rate limits and the access log): ``X-Forwarded-For`` only from
trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TrustedProxies:
    """The proxies (IPs or CIDRs) whose ``X-Forwarded-For`` is believed."""

    def __init__(self, networks: Iterable[str]) -> None:
        self._networks: list[Network] = [ipaddress.ip_network(n, strict=False) for n in networks]

    def trusts(self, address: Address) -> bool:
        """Whether ``address`` is one of the trusted proxies."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)

    def client(self, peer: str | None, forwarded_for: Iterable[str] = ()) -> str:
        """The address a request came from.

        Starting at the direct ``peer``, each hop that is a trusted proxy hands over
        to the address it says it forwarded for (the rightmost ``X-Forwarded-For``
        entry not yet used), so a client cannot forge its address by sending the
        header itself: only what trusted proxies appended is read.
        """
        current = _parse(peer)
        if current is None:
            return peer or "unknown"
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
        for hop in reversed(hops):
            if not self.trusts(current):
                break
            previous = _parse(hop)
            if previous is None:
                break
            current = previous
        return str(current)


def _parse(text: str | None) -> Address | None:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None

"""Client addresses: X-Forwarded-For is believed only from trusted proxies."""

from __future__ import annotations

from callfs.addresses import TrustedProxies


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    proxies = TrustedProxies([])
    assert proxies.client("203.0.113.9", ["198.51.100.1"]) == "203.0.113.9"


def test_header_from_an_untrusted_peer_is_ignored() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client("203.0.113.9", ["198.51.100.1"]) == "203.0.113.9"


def test_trusted_peer_hands_over_to_the_address_it_forwarded_for() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client("10.1.2.3", ["198.51.100.1"]) == "198.51.100.1"


def test_a_client_cannot_forge_its_address_through_a_trusted_proxy() -> None:
    # The client sent "X-Forwarded-For: 1.1.1.1"; the proxy appended the real address.
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client("10.1.2.3", ["1.1.1.1, 198.51.100.1"]) == "198.51.100.1"


def test_chains_of_trusted_proxies_are_walked_right_to_left() -> None:
    proxies = TrustedProxies(["10.0.0.0/8", "192.0.2.7"])
    chain = ["198.51.100.1, 192.0.2.7", "10.9.9.9"]
    assert proxies.client("10.1.2.3", chain) == "198.51.100.1"


def test_when_every_hop_is_trusted_the_leftmost_is_the_client() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client("10.1.2.3", ["10.0.0.5, 10.0.0.6"]) == "10.0.0.5"


def test_a_garbage_hop_stops_the_walk_at_the_last_good_address() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client("10.1.2.3", ["198.51.100.1, not-an-ip"]) == "10.1.2.3"
    assert proxies.client("10.1.2.3", ["unknown, 10.0.0.9"]) == "10.0.0.9"


def test_single_ips_ipv6_and_mapped_addresses_are_matched() -> None:
    proxies = TrustedProxies(["127.0.0.1", "fd00::/8"])
    assert proxies.client("127.0.0.1", ["2001:db8::1"]) == "2001:db8::1"
    assert proxies.client("fd00::1", ["198.51.100.1"]) == "198.51.100.1"
    assert proxies.client("::ffff:127.0.0.1", ["198.51.100.2"]) == "198.51.100.2"
    assert proxies.client("127.0.0.2", ["198.51.100.1"]) == "127.0.0.2"


def test_no_peer_is_unknown() -> None:
    assert TrustedProxies(["127.0.0.1"]).client(None, ["198.51.100.1"]) == "unknown"

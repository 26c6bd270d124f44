"""Redis key layout, on exact bytes, without a server."""

from __future__ import annotations

import pytest

from targeting.stores.keys import (
    FORMAT_VERSION,
    counter_key,
    decode_event_value,
    encode_event_value,
    event_key,
)


def test_format_version_is_in_the_prefix() -> None:
    assert FORMAT_VERSION == 1
    assert event_key("u", "a").startswith(b"t1:")


@pytest.mark.parametrize(
    ("user_id", "advertiser", "expected"),
    [
        ("u1", "acme", b"t1:ev:acme:u1"),  # plain ids
        ("用户", "acme", "t1:ev:acme:用户".encode()),  # UTF-8 user ids
        ("b:c", "a", b"t1:ev:a:b%3Ac"),  # a colon in the user id is escaped ...
        ("c", "a:b", b"t1:ev:a%3Ab:c"),  # ... and in the advertiser, so these two differ
        ("100%", "x", b"t1:ev:x:100%25"),  # the escape character itself is escaped
        ("", "acme", b"t1:ev:acme:"),  # empty id (rejected upstream) still encodes
    ],
    ids=["plain", "utf8", "colon-user", "colon-advertiser", "percent", "empty-user"],
)
def test_event_key(user_id: str, advertiser: str, expected: bytes) -> None:
    assert event_key(user_id, advertiser) == expected


def test_event_keys_never_collide_across_advertisers() -> None:
    # the tenant-isolation property: (advertiser, user) -> key is injective
    pairs = [("a:b", "c"), ("a", "b:c"), ("a%3Ab", "c"), ("a", "b%3Ac"), ("a", "b"), ("b", "a")]
    keys = {event_key(user, adv) for adv, user in pairs}
    assert len(keys) == len(pairs)


@pytest.mark.parametrize(
    ("user_id", "key", "expected"),
    [
        ("u1", "cap:acme-spring:d:2026-11-24", b"t1:c:u1:cap:acme-spring:d:2026-11-24"),  # user cap
        ("u:1", "cap:x:h:2026-11-24T08", b"t1:c:u%3A1:cap:x:h:2026-11-24T08"),  # escaped user
        ("", "spend:acme-spring:2026-11-24", b"t1:g:spend:acme-spring:2026-11-24"),  # shared
    ],
    ids=["user-cap", "user-with-colon", "shared-spend"],
)
def test_counter_key(user_id: str, key: str, expected: bytes) -> None:
    assert counter_key(user_id, key) == expected


@pytest.mark.parametrize(
    ("ts", "expires", "raw"),
    [
        (1700000000.0, 1702592000.0, b"1700000000.0|1702592000.0"),
        (1700000000.123456, 1700000100.123456, b"1700000000.123456|1700000100.123456"),
        (0.1, 86400.1, b"0.1|86400.1"),  # repr round-trips exactly
    ],
    ids=["whole", "fraction", "repr-shortest"],
)
def test_event_value_round_trip(ts: float, expires: float, raw: bytes) -> None:
    assert encode_event_value(ts, expires) == raw
    assert decode_event_value(raw) == (ts, expires)

"""Redis key and value encodings: pure functions, no server, tested on exact bytes.

Layout (format version 1, prefix ``t1``)::

    t1:ev:<advertiser>:<user_id>   hash  event type -> b"<ts>|<expires>"  (latest ts wins)
    t1:c:<user_id>:<key>           string counter of one user (frequency caps)
    t1:g:<key>                     string shared counter (spend per campaign and day)
    t1:once:<key>                  string idempotency claim (an impression or click id) -> value

Every key of an advertiser's events carries the advertiser id, so a query for
advertiser B can never read A's hash. ``%`` and ``:`` inside ids are
percent-escaped so that ``("a:b", "c")`` and ``("a", "b:c")`` never share a key.
Bump :data:`FORMAT_VERSION` (and so the prefix) when the layout changes; old keys
then simply expire.
"""

from __future__ import annotations

FORMAT_VERSION = 1
PREFIX = b"t%d" % FORMAT_VERSION


def escape(part: str) -> bytes:
    """UTF-8 bytes of ``part`` with ``%`` → ``%25`` and ``:`` → ``%3A``."""
    if ":" in part or "%" in part:  # rare; the check keeps bulk ingest fast
        part = part.replace("%", "%25").replace(":", "%3A")
    return part.encode()


def unescape(raw: bytes) -> str:
    """Inverse of :func:`escape`."""
    text = raw.decode()
    if "%" in text:
        text = text.replace("%3A", ":").replace("%25", "%")
    return text


def event_key(user_id: str, advertiser: str) -> bytes:
    """Hash holding one user's latest events for one advertiser."""
    return b"%s:ev:%s:%s" % (PREFIX, escape(advertiser), escape(user_id))


def counter_key(user_id: str, key: str) -> bytes:
    """Counter ``key`` of ``user_id``; ``user_id=""`` is a shared (per-campaign) counter.

    ``key`` is the last component, so it is stored as given (colons allowed).
    """
    if user_id == "":
        return b"%s:g:%s" % (PREFIX, key.encode())
    return b"%s:c:%s:%s" % (PREFIX, escape(user_id), key.encode())


def encode_event_value(ts: float, expires: float) -> bytes:
    """Hash field value: ``repr`` of both floats (round-trips exactly), ``|``-separated."""
    return b"%s|%s" % (repr(float(ts)).encode(), repr(float(expires)).encode())


def decode_event_value(raw: bytes) -> tuple[float, float]:
    """Inverse of :func:`encode_event_value`: ``(ts, expires)``."""
    ts, _, expires = raw.partition(b"|")
    return float(ts), float(expires)


def once_key(key: str) -> bytes:
    """Idempotency claim ``key`` (``imp:<nonce>``, ``clk:<nonce>``); stored as given."""
    return b"%s:once:%s" % (PREFIX, key.encode())

"""Signed impression ids: what a decision was, carried by the id itself.

Every decision gets an ``impression_id`` that encodes the decision (user,
campaign, time, price and the request's attributes) and an HMAC-SHA256 tag
over it. Reporting the impression or a click by that id needs no server-side
lookup, so any worker of any process can accept it, and the log row gets the
decision's attributes even though only the id came back. An id that does not
verify (forged, altered, cut) is refused.

Layout (version 1), then URL-safe base64 without padding::

    u8 version | 8 bytes nonce | u32 decided (epoch s) | f32 price (CPM)
    | i32 province | i32 city | u8 gender (0 unknown, 1 male, 2 female) | i16 age (-1 unknown)
    | str16 user_id | str8 campaign_id | str8 scene | str8 slot | str16 tags (comma-joined)
    | 16 bytes HMAC-SHA256(key, everything before)

``strN`` is a little-endian uN byte length and UTF-8 bytes. The nonce (4 random
bytes per process + a 4-byte counter) makes every id unique: it is the
idempotency key of the impression and of its click.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import os
import secrets
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

VERSION = 1
TAG_BYTES = 16
_HEAD = struct.Struct("<B8sIf")
_USER = struct.Struct("<iiBh")
_GENDERS = (None, "male", "female")
_GENDER_CODE = {"male": 1, "female": 2}


class BadId(ValueError):
    """An impression id that is not one of ours: malformed, altered or signed with another key."""


@dataclass(frozen=True)
class Impression:
    """What a verified id says about its decision. ``nonce`` is 16 hex digits."""

    nonce: str
    decided: float
    price: float
    user_id: str
    campaign_id: str
    province: int | None = None
    city: int | None = None
    gender: str | None = None
    age: int | None = None
    tags: tuple[str, ...] = ()
    scene: str | None = None
    slot: str | None = None


def load_secret(path: str | Path) -> bytes:
    """The signing key in ``path`` (hex), made once (32 random bytes, mode 0600) when absent.

    Every worker and process of a deployment must read the same file, so that an id
    minted by one verifies in another."""
    p = Path(path)
    try:
        text = p.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        p.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        try:  # O_EXCL: when two workers race, one writes and both read the winner's key
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_secret(p)
        with os.fdopen(fd, "w") as fh:
            fh.write(key.hex() + "\n")
        return key
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{p}: the secret file holds a hex key") from None
    if len(key) < 16:
        raise ValueError(f"{p}: the secret is at least 16 bytes (32 hex digits)")
    return key


def _str(raw: str | None, wide: bool = False) -> bytes:
    b = raw.encode() if raw else b""
    if len(b) > (0xFFFF if wide else 0xFF):  # only a slot or scene could be this long: cut it
        b = b[: 0xFFFF if wide else 0xFF].decode(errors="ignore").encode()
    return struct.pack("<H" if wide else "<B", len(b)) + b


class Signer:
    """Mint and verify impression ids under one key. Thread-safe; cheap to call."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the signing key is at least 16 bytes")
        block = key.ljust(64, b"\0") if len(key) <= 64 else hashlib.sha256(key).digest().ljust(64, b"\0")
        # HMAC (RFC 2104) from pre-keyed SHA-256 states: two hash copies per id, half the
        # time of hmac.digest, which sets the key up again on every call
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self._prefix = secrets.token_bytes(4)
        self._counter = itertools.count(secrets.randbelow(1 << 31))

    def user_part(self, user_id: str, province: int | None, city: int | None, gender: str | None,
                  age: int | None, tags: Iterable[str] | None, scene: str | None,
                  slot: str | None) -> tuple[bytes, bytes]:
        """The request's share of the payload (before and after the campaign id): built once
        per decide answer, shared by its decisions."""
        head = _USER.pack(province or 0, city or 0, _GENDER_CODE.get(gender or "", 0),
                          -1 if age is None else age) + _str(user_id, True)
        tail = _str(scene) + _str(slot) + _str(",".join(sorted(tags)) if tags else "", True)
        return head, tail

    def mint(self, user: tuple[bytes, bytes], campaign_id: str, decided: float, price: float) -> str:
        """One id. ``user`` comes from :meth:`user_part`."""
        nonce = self._prefix + (next(self._counter) & 0xFFFFFFFF).to_bytes(4, "little")
        body = _HEAD.pack(VERSION, nonce, int(decided), price) + user[0] + _str(campaign_id) + user[1]
        tag = self._tag(body)
        return base64.urlsafe_b64encode(body + tag).rstrip(b"=").decode()

    def _tag(self, body: bytes) -> bytes:
        """HMAC-SHA256(key, body), cut to TAG_BYTES."""
        inner = self._inner.copy()
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:TAG_BYTES]

    def verify(self, token: object) -> Impression:
        """The decision behind ``token``; :class:`BadId` when it is not a valid id of this key."""
        if not isinstance(token, str) or not 40 <= len(token) <= 2000:
            raise BadId("not an impression id")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise BadId("not an impression id") from None
        body, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
        if len(raw) <= _HEAD.size + TAG_BYTES or not hmac.compare_digest(self._tag(body), tag):
            raise BadId("impression id signature does not verify (forged, altered or from another key)")
        return _decode(body)


def _decode(body: bytes) -> Impression:
    try:
        version, nonce, decided, price = _HEAD.unpack_from(body)
        if version != VERSION:
            raise BadId(f"impression id version {version} is not supported")
        province, city, gender, age = _USER.unpack_from(body, _HEAD.size)
        at = _HEAD.size + _USER.size
        parts: list[str] = []
        for wide in (True, False, False, False, True):  # user, campaign, scene, slot, tags
            (n,), at = struct.unpack_from("<H" if wide else "<B", body, at), at + (2 if wide else 1)
            parts.append(body[at:at + n].decode())
            at += n
        if at != len(body):
            raise BadId("impression id has trailing bytes")
    except (struct.error, UnicodeDecodeError, IndexError):
        raise BadId("impression id is malformed") from None
    user_id, campaign_id, scene, slot, tags = parts
    return Impression(
        nonce=nonce.hex(), decided=float(decided), price=float(price), user_id=user_id,
        campaign_id=campaign_id, province=province or None, city=city or None,
        gender=_GENDERS[gender] if gender < 3 else None, age=None if age < 0 else age,
        tags=tuple(tags.split(",")) if tags else (), scene=scene or None, slot=slot or None)

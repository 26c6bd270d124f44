"""Impression ids: the exact layout, round trips, and every way a forged id is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from pathlib import Path

import pytest

from targeting.delivery.ids import TAG_BYTES, BadId, Impression, Signer, load_secret

KEY = bytes(range(32))


def test_layout_is_the_documented_bytes() -> None:
    s = Signer(KEY)
    token = s.mint(s.user_part("u1", 440000, 440300, "female", 29, ["it_fan", "investor"], "office", "feed"),
                   "acme-spring", 1_800_000_000.9, 12.5)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    body, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
    assert tag == hmac.digest(KEY, body, "sha256")[:TAG_BYTES]
    version, _nonce, decided, price = struct.unpack_from("<B8sIf", body)
    assert (version, decided, price) == (1, 1_800_000_000, 12.5)
    assert body[17:28] == struct.pack("<iiBh", 440000, 440300, 2, 29)
    assert body[28:] == (b"\x02\x00u1" b"\x0bacme-spring" b"\x06office" b"\x04feed" b"\x0f\x00investor,it_fan")


@pytest.mark.parametrize("attrs", [
    {"province": 440000, "city": 440300, "gender": "female", "age": 29, "tags": ("investor", "it_fan"), "scene": "office", "slot": "feed"},
    {},  # nothing known but the user
    {"gender": "male", "age": 0, "tags": ()},  # age 0 is a known age
    {"slot": "首页-banner", "scene": "home"},  # non-ASCII survives
], ids=["everything", "nothing", "age-zero", "unicode-slot"])
def test_round_trip(attrs: dict) -> None:
    s = Signer(KEY)
    full = {"province": None, "city": None, "gender": None, "age": None, "tags": (), "scene": None, "slot": None,
            **attrs}
    token = s.mint(s.user_part("用户-7", full["province"], full["city"], full["gender"], full["age"], full["tags"],
                               full["scene"], full["slot"]), "c1", 1_800_000_000, 3.25)
    got = s.verify(token)
    assert got == Impression(nonce=got.nonce, decided=1_800_000_000.0, price=3.25, user_id="用户-7", campaign_id="c1",
                             **full)


def test_every_id_is_unique() -> None:
    s = Signer(KEY)
    user = s.user_part("u", None, None, None, None, None, None, None)
    nonces = {s.verify(s.mint(user, "c", 1e9, 1.0)).nonce for _ in range(1000)}
    assert len(nonces) == 1000


def _flip(token: str, at: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[at] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_any_altered_byte_is_refused() -> None:
    s = Signer(KEY)
    token = s.mint(s.user_part("u1", 440000, None, "male", 30, None, None, None), "acme-spring", 1e9, 12.5)
    n = len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    for at in range(n):
        with pytest.raises(BadId):
            s.verify(_flip(token, at))


@pytest.mark.parametrize("token", [
    None, 42, "", "not-an-id", "A" * 60, "!!!!" * 20, "A" * 3000,
], ids=["none", "number", "empty", "short", "zeros", "not-base64", "too-long"])
def test_garbage_is_refused(token: object) -> None:
    with pytest.raises(BadId):
        Signer(KEY).verify(token)


def test_another_key_is_refused() -> None:
    a, b = Signer(KEY), Signer(os.urandom(32))
    token = a.mint(a.user_part("u1", None, None, None, None, None, None, None), "c", 1e9, 1.0)
    with pytest.raises(BadId):
        b.verify(token)


def test_secret_file_made_once_and_kept(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "notice-secret"
    first = load_secret(p)
    assert len(first) == 32 and p.stat().st_mode & 0o777 == 0o600
    assert load_secret(p) == first
    p.write_text("zz")
    with pytest.raises(ValueError, match="hex"):
        load_secret(p)
    p.write_text(hashlib.sha256(b"x").hexdigest()[:8])
    with pytest.raises(ValueError, match="16 bytes"):
        load_secret(p)

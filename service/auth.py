"""API keys and roles (contract §4 "Access").

A key file is YAML or JSON: a list of ``{key, role}`` (or ``{"keys": [...]}``)
where ``role`` is ``ad_server``, ``advertiser:<id>`` or ``admin``. Keys are kept
only as SHA-256 digests and compared in constant time against every stored
digest, so neither the key nor its position leaks through timing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from targeting.errors import Forbidden, TargetingError

_ADVERTISER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


class Unauthorized(TargetingError):
    """No or unknown API key: HTTP 401."""

    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, path="Authorization", code="unauthorized")


@dataclass(frozen=True)
class Principal:
    """Who is calling. ``role`` is ``ad_server``, ``advertiser``, ``admin`` or ``open``
    (no ``--auth``: the local demo, allowed everything but shown advertiser-level reach)."""

    role: str
    advertiser: str | None = None

    @property
    def exact_reach(self) -> bool:
        """Only operators see exact audience counts; advertisers and the open demo get
        the privacy-protected view."""
        return self.role == "admin"

    def allow(self, *roles: str) -> None:
        """Raise Forbidden unless this principal has one of ``roles`` (admin and open pass)."""
        if self.role in ("admin", "open") or self.role in roles:
            return
        need = " or ".join(roles) if roles else "admin"
        raise Forbidden(f"this key's role ({self.describe()}) may not call this endpoint; needs {need}")

    def own_advertiser(self, requested: Any, path: str = "advertiser") -> str | None:
        """The advertiser a request acts for: an advertiser key acts only for itself
        (another id → 403); admins and the open demo name any advertiser (or none)."""
        if requested is not None and (not isinstance(requested, str) or not _ADVERTISER.match(requested)):
            raise TargetingError("advertiser is an advertiser id (letters, digits, _.:-)", path=path)
        if self.role == "advertiser":
            if requested is not None and requested != self.advertiser:
                raise Forbidden(f"this key belongs to advertiser {self.advertiser!r}, not {requested!r}",
                                path=path)
            return self.advertiser
        return requested

    def describe(self) -> str:
        return f"advertiser:{self.advertiser}" if self.role == "advertiser" else self.role


OPEN = Principal("open")


class KeyRing:
    """Digests of the accepted keys and their principals."""

    def __init__(self, entries: Iterable[tuple[str, Principal]]) -> None:
        self._entries = [(hashlib.sha256(k.encode()).digest(), p) for k, p in entries]
        if not self._entries:
            raise TargetingError("the auth file lists no keys", path="keys")

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def load(cls, path: str | Path) -> KeyRing:
        """Read a YAML or JSON key file; every problem is a TargetingError naming the entry."""
        p = Path(path)
        try:
            text = p.read_bytes()
        except OSError as e:
            raise TargetingError(f"cannot read auth file {str(p)!r}: {e.strerror}", path="auth") from None
        try:
            raw = orjson.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
        except (orjson.JSONDecodeError, yaml.YAMLError) as e:
            raise TargetingError(f"auth file {str(p)!r} is not valid YAML/JSON: {e}", path="auth") from None
        return cls.from_entries(raw)

    @classmethod
    def from_entries(cls, raw: Any) -> KeyRing:
        if isinstance(raw, Mapping) and "keys" in raw:
            raw = raw["keys"]
        if not isinstance(raw, list):
            raise TargetingError("an auth file is a list of {key, role}", path="keys")
        entries = []
        seen: set[str] = set()
        for i, item in enumerate(raw):
            where = f"keys[{i}]"
            if not isinstance(item, Mapping) or set(item) - {"key", "role", "name"}:
                raise TargetingError("each entry is {key, role} (and an optional name)", path=where)
            key, role = item.get("key"), item.get("role")
            if not isinstance(key, str) or len(key) < 16:
                raise TargetingError("key is a string of at least 16 characters", path=f"{where}.key")
            if key in seen:
                raise TargetingError("duplicate key", path=f"{where}.key")
            seen.add(key)
            entries.append((key, parse_role(role, f"{where}.role")))
        return cls(entries)

    def authenticate(self, authorization: str | None) -> Principal:
        """``Authorization: Bearer <key>`` → its principal; Unauthorized otherwise."""
        if not authorization:
            raise Unauthorized("missing API key: send Authorization: Bearer <key>")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("malformed Authorization header: expected Bearer <key>")
        digest = hashlib.sha256(key.strip().encode()).digest()
        found: Principal | None = None
        for stored, principal in self._entries:  # no early exit: time does not depend on the match
            if hmac.compare_digest(stored, digest):
                found = principal
        if found is None:
            raise Unauthorized("unknown API key")
        return found


def parse_role(role: Any, path: str = "role") -> Principal:
    if role in ("ad_server", "admin"):
        return Principal(role)
    if isinstance(role, str) and role.startswith("advertiser:") and _ADVERTISER.match(role[11:]):
        return Principal("advertiser", role[11:])
    raise TargetingError(f"unknown role {role!r}; expected ad_server, advertiser:<id> or admin", path=path)

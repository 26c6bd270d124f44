"""The advertiser-facing view of a reach answer: threshold, rounding, anti-differencing.

* Counts under :data:`THRESHOLD` (100) are never shown: ``users: null,
  below_threshold: true``; breakdown cells, funnel steps and overlap counts alike
  (a hidden cell is ``null``). ``est_daily_impressions`` is hidden with the users.
* Shown counts get deterministic noise and are then rounded to 2 significant digits.

**Why deterministic noise, and keyed on what.** Rounding alone leaks: two specs that
differ by 3 users show different rounded counts exactly when the true counts
straddle a rounding boundary, and an attacker can search for such a pair. Random
noise per query leaks too: repeat the query and average. So the noise is a pure
function of a server secret and the query, and it has two independent parts:

1. one keyed by the *audience* (``answer["audience_key"]``, a digest of the exact
   matched user set). Rewriting a spec in many equivalent ways to average the noise
   away does not help: every rewrite has the same audience, so the same noise;
2. one keyed by the *spec* (``spec_key``, the canonical ``spec.to_dict()``), so that
   two specs whose audiences are equal do not get equal answers: equality of answers
   would otherwise tell an attacker "excluding user X changed nothing", i.e. X was
   not in the audience.

Each part is Laplace with scale ``max(10, 1% of the count)``: well above a handful of
users and below the 2-significant-digit rounding for large audiences. Two specs that
differ by a few users therefore get independent noise of tens of users, and their
difference says nothing about the few. What remains is an averaging attack over many
*different* audiences that all differ by the same few users; that needs a query
budget per advertiser (the service's job), not a better formula.

**Exports: advertisers download only their own data.** A file of user ids cannot be
noised, and any floor on single exports is defeated by differencing: export "women"
and "women outside 三亚", diff the files, and the women of 三亚 fall out, however
small that group is (issue 19; three or more exports carve finer groups still). So,
as Meta and Tencent do, a *platform-derived* audience (any spec that uses geo, time,
gender, age, tags or scene) stays in the platform: an advertiser targets it in a
campaign and counts it with reach, but cannot download it. An advertiser's export is
a first-party audience: a spec made only of its own retargeting rules (``any_of`` of
them included), every alternative needing at least one ``retargeting.any`` rule (a
"none"-only rule would mean "everyone else", platform data). Such an export is
computed from the advertiser's own events in the state store and nothing else, not
even matched against the profile population, so the file is a function of data the
advertiser sent: no sequence of exports can reveal anything about the platform's
users, not even which of its ids the platform knows (see :func:`first_party_problem`).
Raw exports of platform data are an operator (admin) job; an operator may hand the
file to an advertiser under a contract. Job status shows advertisers rounded counts.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any

THRESHOLD = 100
MIN_NOISE = 10.0
RELATIVE_NOISE = 0.01
_PROCESS_SECRET = os.urandom(32)  # stable within a process; pass ``secret`` to share it across workers


def process_secret() -> bytes:
    """This process's default noise secret; hand it to worker processes so that a query
    gets the same noise wherever it is answered."""
    return _PROCESS_SECRET


def spec_key(spec: Any, taxonomy: Any = None) -> str:
    """Canonical text of a parsed spec (``Spec.to_dict``), the ``spec_key`` of :func:`advertiser_view`."""
    return json.dumps(spec.to_dict(taxonomy), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def round_sig(x: float, digits: int = 2) -> int:
    """``x`` rounded to ``digits`` significant digits (half away from zero), as an int."""
    if x == 0:
        return 0
    exp = math.floor(math.log10(abs(x))) - digits + 1
    q = 10.0 ** exp
    return int(math.copysign(math.floor(abs(x) / q + 0.5) * q, x))


def _laplace(secret: bytes, *key: str) -> float:
    """A Laplace(0, 1) draw that is a pure function of ``secret`` and ``key``."""
    h = hashlib.sha256(secret + "\x1f".join(key).encode()).digest()
    u = (int.from_bytes(h[:8], "big") + 0.5) / 2.0**64 - 0.5  # in (-0.5, 0.5)
    return -math.copysign(1.0, u) * math.log(1.0 - 2.0 * abs(u))


def noisy_count(n: int, spec_part: str, audience_part: str | None, field: str,
                secret: bytes) -> int | None:
    """The shown value of a count: None below the threshold, else noised and rounded."""
    if n is None or n < THRESHOLD:
        return None
    scale = max(MIN_NOISE, RELATIVE_NOISE * n)
    noise = _laplace(secret, "spec", spec_part, field)
    if audience_part is not None:
        noise += _laplace(secret, "audience", audience_part, field)
    shown = n + scale * noise
    if shown < THRESHOLD:
        return None
    return round_sig(shown)


def advertiser_view(answer: dict[str, Any], spec_key: str, *, secret: bytes | None = None) -> dict[str, Any]:
    """The advertiser-facing copy of an exact reach answer (see the module docstring).

    ``spec_key``: canonical spec text (:func:`spec_key`); ``secret``: the deployment's
    noise secret (bytes; default: a random one per process).
    """
    sec = secret if secret is not None else _PROCESS_SECRET
    aud = answer.get("audience_key")

    def show(n: int | None, field: str) -> int | None:
        return noisy_count(n, spec_key, aud, field, sec) if n is not None else None

    users = show(answer["users"], "users")
    out: dict[str, Any] = {"users": users, "below_threshold": users is None}
    est = answer.get("est_daily_impressions")
    if users is None or est is None:
        out["est_daily_impressions"] = None
    else:
        out["est_daily_impressions"] = round_sig(est * users / answer["users"]) if answer["users"] else 0
    out["breakdown"] = {
        dim: {value: show(n, f"breakdown|{dim}|{value}") for value, n in cells.items()}
        for dim, cells in (answer.get("breakdown") or {}).items()
    }
    if "breakdown_names" in answer:  # taxonomy labels of the cells' keys: nothing to protect
        out["breakdown_names"] = answer["breakdown_names"]
    out["population"] = round_sig(answer["population"])
    if answer.get("funnel") is not None:
        out["funnel"] = [{"step": s["step"], "users": show(s["users"], f"funnel|{i}|{s['step']}")}
                         for i, s in enumerate(answer["funnel"])]
    else:
        out["funnel"] = None
    if "overlap" in answer:
        out["overlap"] = {k: show(v, f"overlap|{k}") for k, v in answer["overlap"].items()}
    if "notes" in answer:
        out["notes"] = list(answer["notes"])
    return out


PLATFORM_FIELDS = ("geo_include", "geo_exclude", "slots", "gender", "age", "tags_any", "tags_all",
                   "tags_none", "scene_include", "scene_exclude")


def first_party_problem(spec: Any) -> str | None:
    """Why an advertiser may not download the audience of ``spec`` (a parsed
    :class:`~targeting.spec.Spec`), or None when it is first-party: made only of the
    advertiser's own retargeting rules, each alternative with an ``any`` rule."""

    def walk(s: Any, has_any: bool) -> str | None:
        for name in PLATFORM_FIELDS:
            value = getattr(s, name)
            if value is not None and value != frozenset():
                dim = {"slots": "time"}.get(name, name.split("_")[0])
                if dim in ("time", "scene"):
                    return f"{dim} constrains impressions, not users: leave it out of an export"
                return (f"{dim} is platform data: an advertiser exports only first-party audiences "
                        f"(its own retargeting rules); target or count this spec instead, or ask an "
                        f"operator for the export")
        has_any = has_any or s.rt_any is not None
        if not s.any_of:
            return None if has_any else ("an audience without a retargeting 'any' rule is drawn from the "
                                         "platform's users; an advertiser exports only users of its own events")
        for sub in s.any_of:
            why = walk(sub, has_any)
            if why is not None:
                return why
        return None

    return walk(spec, False)


def shown_count(n: int | None) -> int | None:
    """A job's row count as an advertiser sees it: 2 significant digits."""
    return None if n is None else round_sig(n)


__all__ = ["THRESHOLD", "advertiser_view", "first_party_problem", "noisy_count", "round_sig", "shown_count",
           "spec_key"]

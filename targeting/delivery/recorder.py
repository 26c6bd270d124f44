"""Impression ids on decisions, impressions and clicks by id (counted once), the log rows.

:class:`Delivery` is what :func:`targeting.delivery.attach` hangs on an engine
(``engine.delivery``). The engine calls :meth:`Delivery.stamp` on every decide
answer and hands ``/v1/impressions`` rows to :meth:`Delivery.record_impressions`;
``/v1/clicks`` and ``targeting events load`` call :meth:`Delivery.record_clicks`.

Idempotency: the first report of an id claims ``imp:<nonce>`` (its value: the
impression's ts) in the state store, a click claims ``clk:<nonce>``: a repeat
finds the claim and is counted as a duplicate, not again (across workers and,
with Redis, across processes). A click needs its impression's claim: a click
for an id never reported as an impression is refused, so is one dated before
its impression or more than ``click_window`` after it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import TargetingError, Unavailable
from ..matcher import moment
from ..request import parse_ts
from ..state import impression_cost
from ..stores import MemoryStore
from ..stores.base import Event, StoreUnavailable
from .ids import BadId, Impression, Signer
from .log import LogWriter

IMPRESSION_TTL = 3600  # seconds from the decision during which its impression may be reported
CLICK_WINDOW = 86400  # seconds after the impression during which a click counts (and is accepted)
MAX_ROWS = 10_000
FUTURE_SLACK = 300


def _error(i: int, kind: str, field: str, code: str, message: str) -> dict[str, Any]:
    path = f"{kind}[{i}]" + (f".{field}" if field else "")
    return {"index": i, "code": code, "message": message, "path": path}


class Delivery:
    """Signs decisions, records impressions and clicks, feeds the log (``writer``, or None: no log).

    ``store``: where claims live (the engine's store when it can ``claim``, else a
    private in-memory one). ``clock``: epoch seconds (the engine's)."""

    def __init__(self, signer: Signer, writer: LogWriter | None, *, store: Any = None,
                 clock: Callable[[], float] = time.time, impression_ttl: int = IMPRESSION_TTL,
                 click_window: int = CLICK_WINDOW) -> None:
        self.signer = signer
        self.writer = writer
        self.claims = store if store is not None and callable(getattr(store, "claim", None)) \
            else MemoryStore(clock=clock)
        self.clock = clock
        self.impression_ttl = impression_ttl
        self.click_window = click_window

    # ------------------------------------------------------------ decisions
    def stamp(self, answer: dict[str, Any], req: Any) -> None:
        """Give every decision of ``answer`` its ``impression_id`` (``req``: the decided Request)."""
        decisions = answer["decisions"]
        if not decisions:
            return
        sign = self.signer
        user = sign.user_part(req.user_id, req.province, req.city, req.gender, req.age, req.tags,
                              req.scene, req.slot)
        now = self.clock()
        for d in decisions:
            d["impression_id"] = sign.mint(user, d["campaign_id"], now, d["ecpm"])

    # ------------------------------------------------------------ impressions
    def record_impressions(self, engine: Any, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """``/v1/impressions``: rows by ``impression_id`` (``ts``, ``price`` optional) or by
        ``user_id`` + ``campaign_id`` as before. Counts toward caps and budgets once per id,
        logs what was counted. Answer: ``{"accepted", "duplicates", "errors"}``."""
        _check_rows(rows, "impressions")
        now = self.clock()
        errors: list[dict[str, Any]] = []
        plain: list[tuple[int, dict[str, Any], Impression | None]] = []  # (index, engine row, decoded id)
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                errors.append(_error(i, "impressions", "", "invalid", "an impression is an object"))
                continue
            if "impression_id" not in row:
                plain.append((i, dict(row), None))
                continue
            try:
                imp = self._verify(row["impression_id"], i, "impressions")
                if now > imp.decided + self.impression_ttl:
                    raise TargetingError(f"the impression id expired {self.impression_ttl} s after its decision",
                                         path=f"impressions[{i}].impression_id", code="expired")
                for field, want in (("user_id", imp.user_id), ("campaign_id", imp.campaign_id)):
                    if row.get(field) is not None and row[field] != want:
                        raise TargetingError(f"{field} does not match the impression id",
                                             path=f"impressions[{i}].{field}")
                ts = now if row.get("ts") is None else parse_ts(row["ts"], f"impressions[{i}].ts")
            except TargetingError as e:
                errors.append({"index": i, **e.to_dict()})
                continue
            price = row.get("price", imp.price)
            plain.append((i, {"user_id": imp.user_id, "campaign_id": imp.campaign_id, "ts": ts,
                              "price": price}, imp))
        claimed = [(i, imp) for i, _, imp in plain if imp is not None]
        fresh = self._claim([f"imp:{imp.nonce}" for _, imp in claimed],
                            [float(r["ts"]) for _, r, imp in plain if imp is not None])
        duplicate = {i for (i, _), f in zip(claimed, fresh) if not f}
        todo = [(i, r, imp) for i, r, imp in plain if i not in duplicate]
        try:
            result = engine.count_impressions([r for _, r, _ in todo])
        except (Unavailable, StoreUnavailable):
            self._release([f"imp:{imp.nonce}" for i, _, imp in todo if imp is not None])
            raise
        bad = set()
        for err in result["errors"]:
            j = err["index"]
            i = todo[j][0]
            bad.add(j)
            path = str(err.get("path") or "")
            errors.append({**err, "index": i, "path": path.replace(f"impressions[{j}]", f"impressions[{i}]", 1)})
        self._release([f"imp:{imp.nonce}" for j, (_, _, imp) in enumerate(todo) if j in bad and imp is not None])
        good = [t for j, t in enumerate(todo) if j not in bad]
        if self.writer is not None and good:
            self.writer.append("impressions", [self._impression_row(engine, r, imp, now) for _, r, imp in good])
        errors.sort(key=lambda e: e["index"])
        return {"accepted": result["accepted"], "duplicates": len(duplicate), "errors": errors}

    def _impression_row(self, engine: Any, r: dict[str, Any], imp: Impression | None, now: float) -> tuple[Any, ...]:
        idx = engine.index
        pos = idx.position[r["campaign_id"]]
        c = idx.campaigns[pos]
        ts = now if r.get("ts") is None else parse_ts(r["ts"])
        price = r.get("price")
        if imp is None:
            profile = engine.profiles.lookup(r["user_id"]) if engine.profiles is not None else None
            attrs = _profile_attrs(profile)
            if price is None and c.bid_type == "cpc":
                price = engine.pctr({"user_id": r["user_id"], "ts": ts}, c.id) * c.bid * 1000
            nonce = "x" + secrets.token_hex(8)  # reported without an id: a fresh one for the log
        else:
            attrs = (imp.province, imp.city, imp.gender, imp.age, list(imp.tags), imp.scene, imp.slot)
            nonce = imp.nonce
        if price is None:
            price = c.bid  # a CPM campaign pays its bid
        cost = impression_cost(float(price), c.bid_type, c.bid, 0.0)
        hour, weekday = _local(idx, pos, ts)
        return (nonce, ts, r["user_id"], c.id, c.advertiser, float(price), cost, *attrs, hour, weekday)

    # ------------------------------------------------------------ clicks
    def record_clicks(self, engine: Any, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """``/v1/clicks``: ``{"impression_id", "ts"?}`` rows. A click is logged, becomes the user's
        ``click`` retargeting event for the campaign's advertiser, and counts once."""
        _check_rows(rows, "clicks")
        now = self.clock()
        errors: list[dict[str, Any]] = []
        ok: list[tuple[int, Impression, float]] = []
        for i, row in enumerate(rows):
            try:
                if not isinstance(row, Mapping):
                    raise TargetingError("a click is an object", path=f"clicks[{i}]")
                extra = set(row) - {"impression_id", "ts"}
                if extra:
                    raise TargetingError(f"unknown field {min(extra)!r}; a click is impression_id and ts",
                                         path=f"clicks[{i}].{min(extra)}")
                if "impression_id" not in row:
                    raise TargetingError("impression_id is required", path=f"clicks[{i}].impression_id")
                imp = self._verify(row["impression_id"], i, "clicks")
                ts = now if row.get("ts") is None else parse_ts(row["ts"], f"clicks[{i}].ts")
                if ts > now + FUTURE_SLACK:
                    raise TargetingError("ts is in the future", path=f"clicks[{i}].ts")
                if imp.campaign_id not in engine.index.position:
                    raise TargetingError(f"unknown campaign {imp.campaign_id!r}", path=f"clicks[{i}].impression_id",
                                         code="unknown_campaign")
            except TargetingError as e:
                errors.append({"index": i, **e.to_dict()})
                continue
            ok.append((i, imp, ts))
        seen = self._claimed([f"imp:{imp.nonce}" for _, imp, _ in ok])
        valid: list[tuple[int, Impression, float, float]] = []
        for (i, imp, ts), imp_ts in zip(ok, seen):
            p = f"clicks[{i}]"
            if imp_ts is None:
                errors.append(_error(i, "clicks", "impression_id", "unknown_impression",
                                     "no impression was reported for this id (or it is older than the click window)"))
            elif ts < imp_ts:
                errors.append({"index": i, "code": "before_impression", "path": f"{p}.ts",
                               "message": "the click is dated before its impression"})
            elif ts > imp_ts + self.click_window:
                errors.append({"index": i, "code": "too_late", "path": f"{p}.ts",
                               "message": f"the click came more than {self.click_window} s after its impression"})
            else:
                valid.append((i, imp, ts, imp_ts))
        fresh = self._claim([f"clk:{imp.nonce}" for _, imp, _, _ in valid], [ts for _, _, ts, _ in valid])
        new = [v for v, f in zip(valid, fresh) if f]
        idx = engine.index
        if new:
            events = [Event(imp.user_id, idx.campaigns[idx.position[imp.campaign_id]].advertiser, "click", ts)
                      for _, imp, ts, _ in new]
            try:
                engine.store.add_events(events, engine.event_ttl())
            except StoreUnavailable as e:
                self._release([f"clk:{imp.nonce}" for _, imp, _, _ in new])
                raise Unavailable(f"state store unavailable, nothing recorded: {e}") from e
            if self.writer is not None:
                self.writer.append("clicks", [self._click_row(idx, imp, ts, imp_ts) for _, imp, ts, imp_ts in new])
        engine.stats["clicks"] += len(new)
        errors.sort(key=lambda e: e["index"])
        return {"accepted": len(new), "duplicates": len(valid) - len(new), "errors": errors}

    @staticmethod
    def _click_row(idx: Any, imp: Impression, ts: float, imp_ts: float) -> tuple[Any, ...]:
        pos = idx.position[imp.campaign_id]
        hour, weekday = _local(idx, pos, ts)
        return (imp.nonce, ts, imp_ts, imp.user_id, imp.campaign_id, idx.campaigns[pos].advertiser,
                imp.province, imp.city, imp.gender, imp.age, list(imp.tags), imp.scene, imp.slot, hour, weekday)

    # ------------------------------------------------------------ helpers
    def _verify(self, token: Any, i: int, kind: str) -> Impression:
        try:
            return self.signer.verify(token)
        except BadId as e:
            raise TargetingError(str(e), path=f"{kind}[{i}].impression_id", code="bad_impression_id") from None

    def _ttl(self) -> int:
        return int(self.impression_ttl + self.click_window + 3600)

    def _claim(self, keys: list[str], values: list[float]) -> list[bool]:
        if not keys:
            return []
        try:
            return list(self.claims.claim(keys, values, self._ttl()))
        except StoreUnavailable as e:
            raise Unavailable(f"state store unavailable, nothing recorded: {e}") from e

    def _claimed(self, keys: list[str]) -> list[float | None]:
        if not keys:
            return []
        try:
            return list(self.claims.claimed(keys))
        except StoreUnavailable as e:
            raise Unavailable(f"state store unavailable, nothing recorded: {e}") from e

    def _release(self, keys: list[str]) -> None:
        if keys:
            try:
                self.claims.release(keys)
            except StoreUnavailable:
                pass  # the claims expire; a retry within their ttl is taken for a repeat

    def status(self) -> dict[str, Any]:
        """The log's state for /healthz and /metrics (``{"state": "off"}`` without a log)."""
        return self.writer.status() if self.writer is not None else {"state": "off"}

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _check_rows(rows: Any, kind: str) -> None:
    if not isinstance(rows, Sequence) or isinstance(rows, (str, bytes)):
        raise TargetingError(f"{kind} is a list", path=kind)
    if len(rows) > MAX_ROWS:
        raise TargetingError(f"at most {MAX_ROWS} {kind} per call", path=kind, code="too_large")


def _profile_attrs(profile: Mapping[str, Any] | None) -> tuple[Any, ...]:
    if not profile:
        return (None, None, None, None, None, None, None)
    tags = profile.get("tags")
    return (profile.get("province"), profile.get("city"), profile.get("gender"), profile.get("age"),
            None if tags is None else sorted(tags), None, None)


def _local(idx: Any, pos: int, ts: float) -> tuple[int, int]:
    """(hour 0-23, weekday 0 = Monday) of ``ts`` in the campaign's time zone."""
    m = moment(idx.zones, ts)
    z = idx.zone_of[pos]
    return int(m.labels[z]["hour"][-2:]), (m.days[z] - 1) % 7

"""The :class:`Engine`: one object behind the HTTP service, the CLI and Python users."""

from __future__ import annotations

import collections
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import ordered
from .budget import SpendMirror
from .compiler import CampaignIndex, compile_campaigns
from .decide import Pending, finish, prepare
from .errors import NotFound, TargetingError, Unavailable
from .layout import Layout
from .matcher import moment
from .ordered import OrderedIndex, ordered_index
from .request import Request, check_id, parse_request, parse_ts
from .rules import load_rules
from .scoring import ClickModel, PriorModel
from .spec import MAX_WINDOW_DAYS, Spec, parse_spec
from .state import cap_key, counter_ttl, impression_cost, spend_key
from .stores import Counter, StateStore, StoreUnavailable, open_store
from .stores.base import StateQuery, UserState
from .taxonomy import Taxonomy

log = logging.getLogger("targeting")


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: a batch keeps hundreds of decisions' objects alive
    at once, which triggers young-generation collections that find nothing (the objects are
    acyclic, freed by reference counting when the batch ends): 10-20% of a batch's time.
    Restores the collector only if it was on (and leaves another thread's pause alone)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _load_index(rules: str | Path, taxonomy: Taxonomy) -> CampaignIndex:
    """Validate ``rules``' campaign files (all or nothing) and compile them."""
    with _collector_paused():  # loading builds objects, it leaves no cycles: 25% faster at 100k
        ruleset = load_rules(rules, taxonomy)
        return compile_campaigns(ruleset.campaigns, taxonomy, ruleset.version)


def settle_heap() -> None:
    """For a long-running process, once an index is loaded: collect garbage, then move
    every live object into the collector's permanent generation (``gc.freeze``).

    A rule set is tens of thousands of long-lived objects. Without this, each full
    collection walks all of them, and that pause (80 ms at 2,000 campaigns, measured
    in a loop of ``decide_batch``) lands inside some decision. Frozen objects are
    still freed by reference counting when a reload drops them. ``targeting serve``
    calls this at start-up; :meth:`Engine.reload` and :meth:`Engine.swap_model` after
    each swap; an application embedding the engine should call it once it is loaded."""
    gc.collect()
    gc.freeze()
MAX_BATCH = 1000
MIN_EVENT_TTL_DAYS = 30


@dataclass(frozen=True)
class Snapshot:
    """What one decision reads: swapped as a whole on reload, so a request never
    sees half of an old rule set and half of a new one. The ranking ``layout`` of
    the index and model (and ``ordered``, the decide fast path's view of it) is
    built here, before the swap, so no request pays for it; its caches go with it."""

    index: CampaignIndex
    model: ClickModel
    layout: Layout
    ordered: OrderedIndex

    @classmethod
    def of(cls, index: CampaignIndex, model: ClickModel) -> Snapshot:
        with _collector_paused():  # ~10^5 acyclic objects: collections would only walk them (1.5 s at 100k)
            layout = Layout.of(index, model)
            return cls(index, model, layout, ordered_index(layout))


class Engine:
    """Decide, reach, export and record state over one taxonomy and rule set.

    Build with :meth:`load` (paths) or the constructor (objects). ``clock``
    returns epoch seconds and is the only source of "now". Spend for daily
    budgets is mirrored locally and re-read every ``budget_refresh_s``; with the
    store down, the last spend is trusted for ``budget_max_stale_s``, then
    budgeted campaigns are skipped (see :mod:`targeting.budget`).
    """

    def __init__(
        self,
        taxonomy: Taxonomy,
        index: CampaignIndex,
        *,
        store: StateStore | None = None,
        model: ClickModel | None = None,
        profiles: Any = None,
        audience: Any = None,
        rules_dir: str | Path | None = None,
        clock: Callable[[], float] = time.time,
        budget_refresh_s: float = 1.0,
        budget_max_stale_s: float = 10.0,
    ) -> None:
        self.taxonomy = taxonomy
        self.store: StateStore = store if store is not None else open_store(None)
        self.profiles = profiles
        self.audience = audience
        self.rules_dir = Path(rules_dir) if rules_dir is not None else None
        self.clock = clock
        self._snap = Snapshot.of(index, model or PriorModel())
        self._reload_lock = threading.Lock()
        self._spend = SpendMirror(ttl=budget_refresh_s, max_stale=budget_max_stale_s)
        self._warned = -1e9
        self.stats: collections.Counter[str] = collections.Counter()
        self.delivery: Any = None  # targeting.delivery.attach: impression ids, clicks, the log

    # ------------------------------------------------------------ building
    @classmethod
    def load(
        cls,
        rules: str | Path = "rules/",
        profiles: str | Path | None = None,
        store: str | StateStore | None = None,
        model: str | Path | ClickModel | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> Engine:
        """Load rules (``rules/taxonomy`` + ``rules/campaigns``), optional profiles,
        a store URL (``None`` = in-memory, ``redis://host:port/db``) and a model dir."""
        taxonomy = Taxonomy.load(Path(rules) / "taxonomy")
        index = _load_index(rules, taxonomy)
        st = open_store(store) if store is None or isinstance(store, str) else store
        mdl: ClickModel | None
        if model is None or isinstance(model, ClickModel):
            mdl = model
        else:
            from .model import load_model

            mdl = load_model(model, taxonomy)
        prof = aud = None
        if profiles is not None:
            from .audience import AudienceIndex

            aud = AudienceIndex.open(profiles, taxonomy)
            prof = aud
        return cls(taxonomy, index, store=st, model=mdl, profiles=prof, audience=aud, rules_dir=rules, clock=clock)

    @property
    def index(self) -> CampaignIndex:
        return self._snap.index

    @property
    def model(self) -> ClickModel:
        return self._snap.model

    @property
    def layout(self) -> Layout:
        """The ranking layout of the rule set and model in force (``targeting.layout``)."""
        return self._snap.layout

    # ------------------------------------------------------------- decide
    def decide(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """One impression → the contract's decide answer. Raises TargetingError on bad input."""
        snap = self._snap
        try:
            pend = self._prepare(snap, request, self.clock(), "")
        except TargetingError:
            self.stats["decide_invalid"] += 1
            raise
        state: UserState | None = None
        degraded: list[str] = []
        if pend.query is not None:
            states, degraded = self._fetch([pend.query])
            state = states[0] if states else None
        return self._finish(snap, pend, state, degraded)

    def decide_batch(self, requests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Answers in the same order. A bad request gets ``{"request_id", "error"}`` in its
        place; the others are decided. One store round trip for the whole batch."""
        if not isinstance(requests, Sequence) or isinstance(requests, (str, bytes)):
            raise TargetingError("requests is a list of decide requests", path="requests")
        if len(requests) > MAX_BATCH:
            raise TargetingError(f"at most {MAX_BATCH} requests per batch, got {len(requests)}",
                                 path="requests", code="too_large")
        with _collector_paused():
            return self._decide_batch(requests)

    def _decide_batch(self, requests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        snap = self._snap
        now = self.clock()
        out: list[dict[str, Any]] = []
        pendings: list[tuple[int, Pending]] = []
        for i, raw in enumerate(requests):
            try:
                pendings.append((i, self._prepare(snap, raw, now, f"requests[{i}]")))
                out.append({})
            except TargetingError as e:
                self.stats["decide_invalid"] += 1
                rid = raw.get("request_id") if isinstance(raw, Mapping) else None
                out.append({"request_id": rid, "error": e.to_dict()})
        asking = [(i, p.query) for i, p in pendings if p.query is not None]
        states: dict[int, Any] = {}
        degraded: list[str] = []
        if asking:
            answers, degraded = self._fetch([q for _, q in asking])
            states = {i: a for (i, _), a in zip(asking, answers)}
        for i, p in pendings:
            out[i] = self._finish(snap, p, states.get(i), degraded if p.query is not None else [])
        return out

    def _prepare(self, snap: Snapshot, raw: Any, now: float, path: str) -> Pending:
        """Validate one request and run it up to its store query (no I/O)."""
        req = parse_request(raw, self.taxonomy, now, path=path)
        if self.profiles is not None:
            req = req.with_profile(self.profiles.lookup(req.user_id))
        index = snap.index
        m = moment(index.zones, req.ts)
        blocked = self._spend.blocked(index, m, self.store) if index.budgeted.size else None
        if req.explain:
            return prepare(index, self.taxonomy, req, snap.model, blocked, m)
        return ordered.prepare(snap.ordered, self.taxonomy, req, blocked, m)

    def _fetch(self, queries: list[StateQuery]) -> tuple[list[UserState], list[str]]:
        """One store round trip: (answers, []) or, when the store cannot answer, ([], degraded)."""
        try:
            return self.store.fetch(queries), []
        except StoreUnavailable as e:
            self.stats["store_unavailable"] += 1
            if time.monotonic() - self._warned > 10:  # one line per 10 s, not one per decision
                self._warned = time.monotonic()
                log.warning("store unavailable, skipping campaigns that need it "
                            "(%d failed store calls so far): %s", self.stats["store_unavailable"], e)
            return [], ["store_unavailable"]

    def _finish(self, snap: Snapshot, pend: Pending, state: UserState | None, degraded: list[str]) -> dict[str, Any]:
        if not degraded and pend.budget_reasons and "store" in pend.budget_reasons.values():
            degraded = ["store_unavailable"]  # budgets failed closed
        if degraded:
            self.stats["decide_degraded"] += 1
        self.stats["decisions"] += 1
        answer = finish(snap.index, self.taxonomy, snap.model, pend, state, degraded)
        if self.delivery is not None:
            self.delivery.stamp(answer, pend.request)
        return answer

    def pctr(self, request: Mapping[str, Any], campaign_id: str) -> float:
        """The model's click probability for one request and campaign."""
        snap = self._snap
        pos = snap.index.position.get(campaign_id)
        if pos is None:
            raise NotFound(f"unknown campaign {campaign_id!r}", path="campaign_id")
        req = parse_request(request, self.taxonomy, self.clock())
        if self.profiles is not None:
            req = req.with_profile(self.profiles.lookup(req.user_id))
        return float(snap.model.predict(req, np.array([pos]), snap.index)[0])

    # ------------------------------------------------------------- state
    def record_impressions(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Count impressions toward caps and budgets; with a delivery attached, rows may
        give an ``impression_id`` (counted once) and are logged (targeting.delivery)."""
        if self.delivery is not None:
            return self.delivery.record_impressions(self, rows)
        return self.count_impressions(rows)

    def count_impressions(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Count impressions toward caps and budgets. Good rows are stored even when
        others are bad; bad rows come back by index."""
        snap = self._snap
        idx = snap.index
        now = self.clock()
        counters: list[Counter] = []
        spent: list[tuple[int, str, float]] = []
        errors: list[dict[str, Any]] = []
        accepted = 0
        if not isinstance(rows, Sequence) or isinstance(rows, (str, bytes)):
            raise TargetingError("impressions is a list", path="impressions")
        if len(rows) > 10 * MAX_BATCH:
            raise TargetingError(f"at most {10 * MAX_BATCH} impressions per call", path="impressions",
                                 code="too_large")
        for i, row in enumerate(rows):
            p = f"impressions[{i}]"
            try:
                if not isinstance(row, Mapping):
                    raise TargetingError("an impression is an object", path=p)
                uid, cid = row.get("user_id"), row.get("campaign_id")
                uid = check_id(uid, f"{p}.user_id")  # the one id rule of decide and events
                pos = idx.position.get(cid) if isinstance(cid, str) else None
                if pos is None:
                    raise TargetingError(f"unknown campaign {cid!r}", path=f"{p}.campaign_id",
                                         code="unknown_campaign")
                ts = now if row.get("ts") is None else parse_ts(row["ts"], f"{p}.ts")
                if ts > now + 300:
                    raise TargetingError("ts is in the future", path=f"{p}.ts")
                price = row.get("price")
                if price is not None and (isinstance(price, bool) or not isinstance(price, (int, float))
                                          or not 0 <= price < 1e9):
                    raise TargetingError("price is a non-negative CPM", path=f"{p}.price")
            except TargetingError as e:
                errors.append({"index": i, **e.to_dict()})
                continue
            c = idx.campaigns[pos]
            labels = moment(idx.zones, ts).labels[idx.zone_of[pos]]
            if c.cap_per is not None:
                counters.append(Counter(uid, cap_key(c.id, labels[c.cap_per]), 1, counter_ttl(c.cap_per)))
            if c.daily_budget is not None or c.bid_type == "cpc":
                pctr = 0.0
                if c.bid_type == "cpc" and price is None:
                    req = Request(user_id=uid, ts=ts)
                    if self.profiles is not None:
                        req = req.with_profile(self.profiles.lookup(uid))
                    pctr = float(snap.model.predict(req, np.array([pos]), idx)[0])
                cost = impression_cost(price, c.bid_type, c.bid, pctr)
                counters.append(Counter("", spend_key(c.id, labels["day"]), cost, counter_ttl("day")))
                spent.append((pos, labels["day"], cost))
            accepted += 1
        if counters:
            try:
                self.store.add_counters(counters)
            except StoreUnavailable as e:
                raise Unavailable(f"state store unavailable, nothing recorded: {e}") from e
            for pos, day, cost in spent:
                self._spend.add(idx, pos, day, cost)
        self.stats["impressions"] += accepted
        return {"accepted": accepted, "errors": errors}

    def record_events(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Store retargeting events; bad rows are reported by index, good ones kept."""
        from .events import parse_events

        if not isinstance(rows, Sequence) or isinstance(rows, (str, bytes)):
            raise TargetingError("events is a list", path="events")
        if len(rows) > 10 * MAX_BATCH:
            raise TargetingError(f"at most {10 * MAX_BATCH} events per call", path="events", code="too_large")
        known = self._snap.index.advertisers
        good, errors = parse_events([dict(r) if isinstance(r, Mapping) else r for r in rows], known, self.clock())
        if good:
            try:
                self.store.add_events(good, self.event_ttl())
            except StoreUnavailable as e:
                raise Unavailable(f"state store unavailable, nothing recorded: {e}") from e
        self.stats["events"] += len(good)
        return {"accepted": len(good), "errors": errors}

    def event_ttl(self) -> int:
        """Events live as long as the longest retargeting window in force (at least 30 days)."""
        days = max(MIN_EVENT_TTL_DAYS, self._snap.index.longest_window_days)
        return min(days, MAX_WINDOW_DAYS) * 86400 + 86400

    # ------------------------------------------------------------- rules
    def reload(self, rules_dir: str | Path | None = None) -> dict[str, Any]:
        """Validate and compile the rules, then swap them in at once. On any error the
        old index keeps serving and RulesError lists the problems."""
        d = Path(rules_dir) if rules_dir is not None else self.rules_dir
        if d is None:
            raise TargetingError("no rules directory to reload from", path="rules")
        with self._reload_lock:
            try:
                index = _load_index(d, self.taxonomy)
            except TargetingError:
                self.stats["reload_failed"] += 1
                raise
            old = self._snap.index.version
            self._snap = Snapshot.of(index, self._snap.model)
            self.rules_dir = d
            settle_heap()
        self.stats["reload_ok"] += 1
        log.info("rules reloaded: %s -> %s (%d campaigns)", old, index.version, index.n_campaigns)
        return {"index_version": index.version, "previous_version": old, "campaigns": index.n_campaigns}

    def swap_model(self, model: ClickModel) -> None:
        self._snap = Snapshot.of(self._snap.index, model)
        settle_heap()

    def campaigns(self) -> list[dict[str, Any]]:
        return [c.summary() for c in self._snap.index.campaigns]

    # ------------------------------------------------------- audiences
    def parse_spec(self, raw: Any, advertiser: str | None = None) -> Spec:
        return parse_spec(raw, self.taxonomy, advertiser=advertiser, path="targeting")

    def _audience(self) -> Any:
        if self.audience is None:
            raise Unavailable("no profiles loaded: start with --profiles PATH to preview reach or export",
                              path="profiles")
        return self.audience

    def reach(self, spec: Any, breakdown: Sequence[str] | None = None, advertiser: str | None = None,
              **options: Any) -> dict[str, Any]:
        """Exact audience size (operator view) with optional breakdowns; see targeting.audience."""
        aud = self._audience()
        parsed = spec if isinstance(spec, Spec) else self.parse_spec(spec, advertiser)
        return aud.reach(parsed, breakdown=list(breakdown or ()), advertiser=advertiser,
                         store=self.store, now=self.clock(), **options)

    def export(self, spec: Any, path: str | Path, advertiser: str | None = None, **options: Any) -> int:
        """Write the audience's user ids to ``path`` (Parquet, or CSV); returns the row count."""
        aud = self._audience()
        parsed = spec if isinstance(spec, Spec) else self.parse_spec(spec, advertiser)
        return int(aud.export(parsed, path, advertiser=advertiser, store=self.store, now=self.clock(), **options))


__all__ = ["MAX_BATCH", "Engine", "Snapshot", "settle_heap"]

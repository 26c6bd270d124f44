"""Learned click model: training with scikit-learn, inference in numpy (``targeting train``).

Features
    Every (request, campaign) row has
    - the campaign's category (bias per category) and the campaign id;
    - user features ``f``: age band (unknown, <18, 18–24, 25–34, 35–44, 45–54,
      55–64, 65+), gender, hour of day and weekday (in ``Asia/Shanghai``, where
      the users are), scene, and each tag of the user;
    - each user feature both on its own and crossed with the category
      (``category × tag``, ``category × age band``, ...), so L2 regularisation
      shrinks a sparse cross toward the shared effect instead of toward zero.

    One-hot, not hashed: the domains are small and known (taxonomy), so there
    are no collisions and the weights stay readable. The trained logistic
    regression folds into three arrays: ``W[f, category]`` (shared + cross
    weights of user feature ``f``), ``bias[category]`` and ``campaign[id]``,
    and a Platt calibration ``p = σ(a·z + b)`` fitted on a held-out slice.

Inference
    ``z = bias[cat] + campaign[id] + Σ_f W[f, cat]`` for the request's active
    features ``f``: one gather per feature over all candidate campaigns, no
    scikit-learn and no per-campaign Python loop. Campaign ids the model has
    not seen (new campaigns) get no id weight, only their category's, and a
    warning is logged once per rule set.

Model directory (versioned)
    ``model.json``: format name and version, feature spec (vocabularies,
    zone, age bands), taxonomy fingerprint, rules version, metrics, created
    time, calibration and the SHA-256 of ``weights.npz``; ``weights.npz``: the
    arrays above. :func:`load_model` refuses other format versions, bad JSON,
    missing or mis-shaped arrays and checksum mismatches with a
    :class:`TargetingError`.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import itertools
import json
import logging
import os
import threading
import weakref
from functools import lru_cache
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import numpy as np

from .compiler import CampaignIndex
from .errors import TargetingError
from .progress import Progress
from .request import Request
from .taxonomy import UNKNOWN, Taxonomy, gender_index

log = logging.getLogger("targeting.model")

FORMAT = "targeting-click-model"
FORMAT_VERSION = 1
MODEL_ZONE = "Asia/Shanghai"
AGE_BAND_EDGES = (18, 25, 35, 45, 55, 65)
N_AGE_BANDS = len(AGE_BAND_EDGES) + 2  # + unknown, + the open last band
ARRAYS = ("W", "bias", "campaign", "campaign_ids")


# ------------------------------------------------------------------ features
class FeatureSpec:
    """Layout of the user features: fixed groups then one feature per tag.

    Feature ids: ``age_band | gender | hour | weekday | scene | tag``; ``n``
    is the padding id (a zero row of ``W``).
    """

    GROUPS = ("age_band", "gender", "hour", "weekday", "scene")

    def __init__(self, tags: list[str], scenes: list[str], categories: list[str]) -> None:
        self.tags = list(tags)
        self.scenes = list(scenes)
        self.categories = list(categories)
        sizes = [N_AGE_BANDS, 3, 24, 7, len(self.scenes) + 1]
        self.offset = dict(zip(self.GROUPS, np.cumsum([0, *sizes[:-1]]).tolist()))
        self.tag_offset = int(sum(sizes))
        self.n = self.tag_offset + len(self.tags)

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_features": [*self.GROUPS, "tag"], "crossed_with": "category",
            "age_band_edges": list(AGE_BAND_EDGES), "zone": MODEL_ZONE,
            "tags": self.tags, "scenes": self.scenes, "categories": self.categories,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        if d.get("zone") != MODEL_ZONE or d.get("age_band_edges") != list(AGE_BAND_EDGES):
            raise ValueError("feature spec zone or age bands differ from this build's")
        return cls(list(d["tags"]), list(d["scenes"]), list(d["categories"]))

    @classmethod
    def of(cls, tx: Taxonomy) -> FeatureSpec:
        return cls(tx.tag_ids, list(tx.scenes), list(tx.categories))

    def user_features(self, ts: np.ndarray, gender: np.ndarray, age: np.ndarray, scene: np.ndarray,
                      tags: np.ndarray) -> np.ndarray:
        """int64[B, 5 + T]: active feature ids per request, padded with ``n``.

        ``gender``/``age``/``scene`` are taxonomy domain indices, ``tags`` int[B, T]
        taxonomy tag indices (sorted) padded with -1. Column order is fixed (the
        summation order of :meth:`ClickModel.predict`, which must not change)."""
        lm = _local_minutes(ts)
        day, minute = np.divmod(lm, 1440)
        out = np.empty((ts.size, len(self.GROUPS) + tags.shape[1]), dtype=np.int64)
        out[:, 0] = self.offset["age_band"] + age_band(age)
        out[:, 1] = self.offset["gender"] + gender
        out[:, 2] = self.offset["hour"] + minute // 60
        out[:, 3] = self.offset["weekday"] + (day + 3) % 7
        out[:, 4] = self.offset["scene"] + scene
        out[:, 5:] = np.where(tags >= 0, self.tag_offset + tags, self.n)
        return out


def age_band(age_domain: np.ndarray) -> np.ndarray:
    """int64[n]: 0 unknown, 1 for <18 ... 7 for 65+ (input: 0 unknown, else 1 + age)."""
    age = np.asarray(age_domain, dtype=np.int64) - 1
    band = 1 + np.searchsorted(np.array(AGE_BAND_EDGES), age, side="right")
    return np.where(age >= 0, band, 0)


def _local_minutes(ts: np.ndarray) -> np.ndarray:
    if ts.size <= 4:  # decide: one request; avoid pandas' fixed cost
        return np.array([_local_minute(int(t // 60)) for t in ts.tolist()], dtype=np.int64)
    from .batchrequests import local_minutes

    return local_minutes(ts, MODEL_ZONE)


@lru_cache(maxsize=8192)
def _local_minute(minute: int) -> int:
    t = dt.datetime.fromtimestamp(minute * 60, ZoneInfo(MODEL_ZONE))
    return (t.replace(tzinfo=dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(minutes=1)


# ------------------------------------------------------------------ inference
class ClickModel:
    """A trained model, aligned with one taxonomy. Build with :func:`load_model`.

    Pure numpy; thread-safe (the only mutable state is a per-index cache)."""

    def __init__(self, *, version: str, spec: FeatureSpec, W: np.ndarray, bias: np.ndarray,
                 campaign: np.ndarray, campaign_ids: list[str], calibration: tuple[float, float],
                 meta: dict[str, Any]) -> None:
        self.version = version
        self.spec = spec
        self.W = W  # float64[spec.n + 1, n_categories]; last row zeros (padding)
        self.bias = bias  # float64[n_categories]
        self.campaign = np.append(campaign, 0.0)  # float64[n_campaigns + 1]; last: unknown campaign
        self.campaign_ids = campaign_ids
        self._campaign_pos = {c: i for i, c in enumerate(campaign_ids)}
        self.a, self.b = calibration
        self.meta = meta
        self._slots: weakref.WeakKeyDictionary[CampaignIndex, np.ndarray] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._tag_index = {t: i for i, t in enumerate(spec.tags)}
        self._scene_index = {s: i + 1 for i, s in enumerate(spec.scenes)}

    def __repr__(self) -> str:
        return f"ClickModel(version={self.version!r}, campaigns={len(self.campaign_ids)})"

    def __getstate__(self) -> dict[str, Any]:  # for Dask workers: caches and locks stay behind
        state = self.__dict__.copy()
        del state["_slots"], state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._slots = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def campaign_slots(self, index: CampaignIndex) -> np.ndarray:
        """int64[index.n_campaigns]: each campaign's row in ``campaign`` (unknown → the zero row)."""
        hit = self._slots.get(index)
        if hit is None:
            unknown = len(self.campaign_ids)
            hit = np.array([self._campaign_pos.get(c, unknown) for c in index.ids], dtype=np.int64)
            missing = [c for c, s in zip(index.ids, hit.tolist()) if s == unknown]
            if missing:
                log.warning(
                    "click model %s has not seen %d of %d campaigns (%s%s); they are scored by category only",
                    self.version, len(missing), index.n_campaigns, ", ".join(missing[:5]),
                    ", ..." if len(missing) > 5 else "",
                )
            with self._lock:
                self._slots[index] = hit
        return hit

    def max_pctr(self, index: CampaignIndex) -> np.ndarray:
        """float64[index.n_campaigns]: an upper bound of each campaign's pCTR over all requests
        (each feature group at its best, every tag with a positive weight present)."""
        u = np.zeros(self.W.shape[1])
        bounds = [*[self.spec.offset[g] for g in FeatureSpec.GROUPS], self.spec.tag_offset]
        for lo, hi in itertools.pairwise(bounds):
            u += self.W[lo:hi].max(axis=0)
        u += np.maximum(self.W[self.spec.tag_offset:self.spec.n], 0.0).sum(axis=0)
        cat = index.category.astype(np.int64)
        z = self.bias[cat] + self.campaign[self.campaign_slots(index)] + u[cat]
        if self.a < 0:
            return np.ones(index.n_campaigns)
        return 1.0 / (1.0 + np.exp(-(self.a * z + self.b)))

    # The logit of P(click) splits into a campaign part and a request part:
    #   a·(bias[k] + campaign[c] + u[k]) + b  =  campaign_logits[c] + a·u[k]   (k: c's category)
    # where u (user_logit / user_logits) sums the request's feature rows of W. The
    # rankers bound a request's best remaining eCPM with it (targeting.bounds).

    def campaign_logits(self, index: CampaignIndex) -> np.ndarray:
        """float64[index.n_campaigns]: each campaign's part of the logit, ``a·(bias + campaign) + b``."""
        cat = index.category.astype(np.int64)
        return cast(np.ndarray, self.a * (self.bias[cat] + self.campaign[self.campaign_slots(index)]) + self.b)

    @property
    def n_categories(self) -> int:
        return int(self.W.shape[1])

    def user_logit(self, request: Request) -> np.ndarray:
        """float64[n_categories]: the user part of the logit of one request (``u`` above)."""
        # one reduction down the rows: the same sequential sum, in the same order, as _user_logits
        return cast(np.ndarray, np.add.reduce(self.W[self._features_one(request)], axis=0))

    def user_logits(self, reqs: Any) -> np.ndarray:
        """float64[B, n_categories]: :meth:`user_logit` of every request of a
        :class:`targeting.batchmatch.Requests` block."""
        return self._user_logits(self.spec.user_features(reqs.ts, reqs.gender, reqs.age, reqs.scene, reqs.tags))

    def predict(self, request: Request, campaigns: np.ndarray, index: CampaignIndex) -> np.ndarray:
        """float64[len(campaigns)]: P(click) of ``request`` for each campaign position."""
        return self.predict_user(self.user_logit(request), campaigns, index)

    def predict_user(self, u: np.ndarray, campaigns: np.ndarray, index: CampaignIndex) -> np.ndarray:
        """:meth:`predict` from the request's :meth:`user_logit` ``u``."""
        campaigns = np.asarray(campaigns, dtype=np.int64)
        cat = index.category[campaigns]
        return self._score(u[cat], cat, self.campaign_slots(index)[campaigns])

    def _features_one(self, request: Request) -> list[int]:
        """The row of :meth:`FeatureSpec.user_features` for one request, in plain Python (decide's path)."""
        o = self.spec.offset
        band = 0 if request.age is None else 1 + bisect.bisect_right(AGE_BAND_EDGES, request.age)
        lm = _local_minute(int(request.ts // 60))
        day, minute = divmod(lm, 1440)
        scene = self._scene_index.get(request.scene, UNKNOWN) if request.scene else UNKNOWN
        feats = [o["age_band"] + band, o["gender"] + gender_index(request.gender), o["hour"] + minute // 60,
                 o["weekday"] + (day + 3) % 7, o["scene"] + scene]
        feats.extend(sorted(self.spec.tag_offset + self._tag_index[t] for t in (request.tags or ())
                            if t in self._tag_index))
        return feats

    def predict_pairs(self, reqs: Any, req: np.ndarray, camp: np.ndarray, index: CampaignIndex) -> np.ndarray:
        """float64[P]: P(click) of pairs (``reqs`` position ``req[k]``, campaign ``camp[k]``)
        for a :class:`targeting.batchmatch.Requests` block; equal to :meth:`predict`."""
        if camp.size == 0:
            return np.zeros(0)
        return self.predict_user_pairs(self.user_logits(reqs), req, camp, index)

    def predict_user_pairs(self, users: np.ndarray, req: np.ndarray, camp: np.ndarray,
                           index: CampaignIndex) -> np.ndarray:
        """:meth:`predict_pairs` from the block's :meth:`user_logits` ``users``."""
        cat = index.category[camp]
        return self._score(users[req, cat], cat, self.campaign_slots(index)[camp])

    def _user_logits(self, feats: np.ndarray) -> np.ndarray:
        """float64[B, n_categories]: Σ_f W[f, :] over each request's active features (fixed order)."""
        u = np.zeros((feats.shape[0], self.W.shape[1]))
        for f in range(feats.shape[1]):
            u = u + self.W[feats[:, f]]
        return u

    def _score(self, user: np.ndarray, cat: np.ndarray, slot: np.ndarray) -> np.ndarray:
        """P(click) from the user part of the logit and each campaign's category and id weights."""
        z = self.bias[cat.astype(np.int64)] + self.campaign[slot] + user
        return 1.0 / (1.0 + np.exp(-(self.a * z + self.b)))


# ------------------------------------------------------------------ files
def taxonomy_fingerprint(tx: Taxonomy) -> str:
    body = json.dumps([tx.tag_ids, list(tx.scenes), list(tx.categories)], ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _bad(directory: Path, message: str) -> TargetingError:
    return TargetingError(f"model {directory}: {message}", path="model", code="bad_model")


def load_model(directory: str | Path, taxonomy: Taxonomy) -> ClickModel:
    """Read a model directory written by :func:`train`, aligned to ``taxonomy``.

    Tags, scenes or categories the model has not seen get zero weight (a new
    category: its prior CTR as bias), with a warning. Raises TargetingError
    (code ``bad_model``) for anything missing, corrupted or of another format."""
    d = Path(directory)
    meta_file = d / "model.json"
    if not meta_file.is_file():
        raise _bad(d, "no model.json (not a model directory written by `targeting train`)")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(d, f"model.json is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _bad(d, f"model.json is not a {FORMAT} description")
    if meta.get("format_version") != FORMAT_VERSION:
        raise _bad(d, f"format version {meta.get('format_version')!r}; this build reads version {FORMAT_VERSION}"
                      " (retrain with `targeting train`)")
    try:
        spec = FeatureSpec.from_dict(meta["feature_spec"])
        a, b = (float(x) for x in meta["calibration"])
        digest = str(meta["weights"]["sha256"])
        version = str(meta["version"])
    except (KeyError, TypeError, ValueError) as e:
        raise _bad(d, f"model.json is incomplete: {e!r}") from None
    wfile = d / "weights.npz"
    try:
        raw = wfile.read_bytes()
    except OSError:
        raise _bad(d, "weights.npz is missing") from None
    if hashlib.sha256(raw).hexdigest() != digest:
        raise _bad(d, "weights.npz does not match the checksum in model.json (corrupted or replaced)")
    try:
        with np.load(wfile, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ARRAYS}
    except (KeyError, ValueError, OSError, EOFError) as e:
        raise _bad(d, f"weights.npz is unreadable or incomplete: {e}") from None
    n_cat = len(spec.categories)
    W, bias, camp, ids = (arrays[k] for k in ARRAYS)
    shapes_ok = (
        W.shape == (spec.n + 1, n_cat) and bias.shape == (n_cat,) and camp.ndim == 1
        and ids.shape == camp.shape and W.dtype.kind == "f" and np.isfinite(W).all()
        and np.isfinite(bias).all() and np.isfinite(camp).all()
    )
    if not shapes_ok:
        raise _bad(d, "weights.npz arrays have the wrong shapes for the feature spec")
    W, bias = _align(d, spec, W.astype(np.float64), bias.astype(np.float64), taxonomy)
    return ClickModel(version=version, spec=FeatureSpec.of(taxonomy), W=W, bias=bias,
                      campaign=camp.astype(np.float64), campaign_ids=[str(x) for x in ids.tolist()],
                      calibration=(a, b), meta=meta)


def _align(d: Path, spec: FeatureSpec, W: np.ndarray, bias: np.ndarray,
           tx: Taxonomy) -> tuple[np.ndarray, np.ndarray]:
    """Re-index weights trained on ``spec``'s vocabularies onto ``tx``'s."""
    live = FeatureSpec.of(tx)
    if live.to_dict() == spec.to_dict():
        return W, bias
    rows = np.full(live.n + 1, spec.n, dtype=np.int64)  # default: the zero padding row
    for g in FeatureSpec.GROUPS:
        if g == "scene":
            continue
        size = live.offset[FeatureSpec.GROUPS[FeatureSpec.GROUPS.index(g) + 1]] - live.offset[g]
        rows[live.offset[g]:live.offset[g] + size] = np.arange(spec.offset[g], spec.offset[g] + size)
    rows[live.offset["scene"]] = spec.offset["scene"]
    for i, s in enumerate(live.scenes):
        if s in spec.scenes:
            rows[live.offset["scene"] + 1 + i] = spec.offset["scene"] + 1 + spec.scenes.index(s)
    for i, t in enumerate(live.tags):
        if t in spec.tags:
            rows[live.tag_offset + i] = spec.tag_offset + spec.tags.index(t)
    cols = [spec.categories.index(c) if c in spec.categories else -1 for c in live.categories]
    W2 = np.zeros((live.n + 1, len(cols)))
    bias2 = np.empty(len(cols))
    for k, c in enumerate(cols):
        if c >= 0:
            W2[:, k] = W[rows, c]
            bias2[k] = bias[c]
        else:
            p = tx.categories[live.categories[k]].prior_ctr
            bias2[k] = np.log(p / (1 - p))
    W2[-1] = 0.0
    new_tags = [t for t in live.tags if t not in spec.tags]
    new_cats = [c for c in live.categories if c not in spec.categories]
    log.warning("model %s was trained on another taxonomy; without weights: tags %s, categories %s",
                d, new_tags or "none", new_cats or "none")
    return W2, bias2


# ------------------------------------------------------------------ training
def train(
    log_path: str | Path, *, rules_dir: str | Path, out_dir: str | Path, holdout: float = 0.2,
    calibration: float = 0.1, C: float = 0.1, seed: int = 0, progress: bool = True,
) -> dict[str, Any]:
    """Fit the click model on a click log (contract §5) and write the model directory.

    ``holdout`` of the rows (random, seeded) are kept for the metrics, and
    ``calibration`` of the rest for the Platt calibration. Log rows whose
    campaign is not in the rules are dropped with a warning (their category is
    unknown). Returns the metrics: held-out ``auc``/``log_loss`` of the model,
    ``truth_auc``/``truth_log_loss`` of the log's ``true_ctr`` on the same rows
    when present, ``base_log_loss`` (a constant CTR), row and click counts.
    """
    # three steps, each named on the bar: the log read, the fit, the calibration and metrics
    with Progress("train", total=3, unit="steps", enabled=progress) as bar:
        return _train(log_path, rules_dir=rules_dir, out_dir=out_dir, holdout=holdout, calibration=calibration,
                      C=C, seed=seed, bar=bar)


def _train(
    log_path: str | Path, *, rules_dir: str | Path, out_dir: str | Path, holdout: float,
    calibration: float, C: float, seed: int, bar: Progress,
) -> dict[str, Any]:
    import time

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, roc_auc_score

    from .rules import load_rules

    t0 = time.perf_counter()

    def say(msg: str) -> None:
        bar.status(msg)
        bar.update(1)

    from .taxonomy import Taxonomy as _Tx

    tx = _Tx.load(Path(rules_dir) / "taxonomy")
    ruleset = load_rules(rules_dir, tx)
    data = read_log(log_path, tx, {c.id: c.category for c in ruleset.campaigns})
    n = data["clicked"].size
    say(f"read {n:,} rows, {int(data['clicked'].sum()):,} clicks")
    if not 0 < holdout < 1 or not 0 <= calibration < 1:
        raise TargetingError("holdout is in (0, 1) and calibration in [0, 1)", path="holdout")
    spec = FeatureSpec.of(tx)
    X = _design(spec, data)
    y = data["clicked"]
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_test = round(n * holdout)
    n_cal = round((n - n_test) * calibration)
    test, cal, fit = order[:n_test], order[n_test:n_test + n_cal], order[n_test + n_cal:]
    for name, part in (("training", fit), ("held-out", test)):
        if part.size == 0 or y[part].min() == y[part].max():
            raise TargetingError(f"the {name} rows have only one label; the log needs clicks and non-clicks",
                                 path="clicked", code="one_class")
    say(f"fitting {fit.size:,} rows x {X.shape[1]:,} features")
    lr = LogisticRegression(C=C, max_iter=300, tol=1e-6)
    lr.fit(X[fit], y[fit])
    n_cat, n_camp = len(spec.categories), len(data["campaign_ids"])
    coef = lr.coef_.ravel()
    intercept = float(lr.intercept_[0])
    bias = intercept + coef[:n_cat]
    camp_w = coef[n_cat:n_cat + n_camp]
    main = coef[n_cat + n_camp:n_cat + n_camp + spec.n]
    cross = coef[n_cat + n_camp + spec.n:].reshape(spec.n, n_cat)
    W = np.zeros((spec.n + 1, n_cat))
    W[:-1] = main[:, None] + cross
    raw_model = ClickModel(version="raw", spec=spec, W=W, bias=bias, campaign=camp_w,
                           campaign_ids=data["campaign_ids"], calibration=(1.0, 0.0), meta={})
    a, b = 1.0, 0.0
    if cal.size and y[cal].min() != y[cal].max():
        z = _logit(_predict_rows(raw_model, data, cal))
        platt = LogisticRegression(C=1e6, max_iter=200).fit(z[:, None], y[cal])
        a, b = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    model = ClickModel(version="new", spec=spec, W=W, bias=bias, campaign=camp_w,
                       campaign_ids=data["campaign_ids"], calibration=(a, b), meta={})
    p = _predict_rows(model, data, test)
    yt = y[test]
    base = float(y[fit].mean())
    metrics: dict[str, Any] = {
        "rows": int(n), "train_rows": int(fit.size), "calibration_rows": int(cal.size), "test_rows": int(test.size),
        "clicks": int(y.sum()), "test_clicks": int(yt.sum()),
        "dropped_unknown_campaign_rows": data["dropped"],
        "auc": float(roc_auc_score(yt, p)), "log_loss": float(log_loss(yt, p, labels=[0, 1])),
        "base_log_loss": float(log_loss(yt, np.full(yt.size, base), labels=[0, 1])),
        "calibration": {"a": a, "b": b}, "C": C,
    }
    if data["true_ctr"] is not None:
        pt = np.clip(data["true_ctr"][test], 1e-12, 1 - 1e-12)
        metrics["truth_auc"] = float(roc_auc_score(yt, pt))
        metrics["truth_log_loss"] = float(log_loss(yt, pt, labels=[0, 1]))
        metrics["auc_gap"] = metrics["truth_auc"] - metrics["auc"]
        metrics["log_loss_ratio"] = metrics["log_loss"] / metrics["truth_log_loss"]
    info = save_model(out_dir, spec=spec, W=W, bias=bias, campaign=camp_w, campaign_ids=data["campaign_ids"],
                      calibration=(a, b), metrics=metrics, taxonomy=tx, rules_version=ruleset.version)
    metrics["version"] = info["version"]
    metrics["model_dir"] = str(out_dir)
    metrics["seconds"] = round(time.perf_counter() - t0, 2)
    say(f"held-out AUC {metrics['auc']:.4f}")
    return metrics


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def _predict_rows(model: ClickModel, data: dict[str, Any], rows: np.ndarray) -> np.ndarray:
    cat = data["category"][rows]
    user = model._user_logits(data["features"][rows])[np.arange(rows.size), cat]
    return model._score(user, cat, data["campaign"][rows])


def _design(spec: FeatureSpec, data: dict[str, Any]) -> Any:
    """CSR matrix: [category | campaign | user feature | user feature × category]."""
    from scipy import sparse

    feats, cat, camp = data["features"], data["category"], data["campaign"]
    n = feats.shape[0]
    n_cat, n_camp = len(spec.categories), len(data["campaign_ids"])
    base_main = n_cat + n_camp
    base_cross = base_main + spec.n
    active = feats < spec.n
    cols = [cat[:, None], (n_cat + camp)[:, None],
            np.where(active, base_main + feats, -1), np.where(active, base_cross + feats * n_cat + cat[:, None], -1)]
    allc = np.concatenate(cols, axis=1)
    keep = allc >= 0
    indptr = np.concatenate([[0], np.cumsum(keep.sum(axis=1))])
    indices = allc[keep]
    return sparse.csr_matrix((np.ones(indices.size), indices, indptr), shape=(n, base_cross + spec.n * n_cat))


def read_log(path: str | Path, tx: Taxonomy, categories: dict[str, str]) -> dict[str, Any]:
    """Validate a click log and turn it into feature arrays.

    Raises TargetingError for a missing ``clicked``/``campaign_id`` column,
    labels other than 0/1 and invalid request attributes (first bad row named)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .batchrequests import parse_requests

    p = Path(path)
    if not p.exists():
        raise TargetingError(f"no click log at {p}", path="log", code="not_found")
    try:
        table = pq.read_table(p)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise TargetingError(f"{p} is not a readable Parquet file: {e}", path="log") from None
    for col in ("campaign_id", "clicked"):
        if col not in table.column_names:
            raise TargetingError(f"the click log has no {col!r} column (a click log has the request columns, "
                                 "campaign_id, clicked 0/1)", path=col, code="missing_column")
    clicked = table.column("clicked")
    if clicked.null_count:
        raise TargetingError(f"clicked has {clicked.null_count} null labels; labels are 0 or 1",
                             path="clicked", code="bad_label")
    values = clicked.to_numpy(zero_copy_only=False)
    if values.dtype == bool:
        values = values.astype(np.int8)
    if values.dtype.kind not in "iuf" or not np.isin(values, (0, 1)).all():
        bad = np.flatnonzero(~np.isin(values, (0, 1)))[:1] if values.dtype.kind in "iuf" else [0]
        v = values[int(bad[0])]
        raise TargetingError(f"clicked must be 0 or 1; row {int(bad[0])} has {getattr(v, 'item', lambda: v)()!r}",
                             path=f"clicked[{int(bad[0])}]", code="bad_label")
    cids = table.column("campaign_id").to_pylist()
    known = np.array([c in categories for c in cids], dtype=bool)
    dropped = int((~known).sum())
    if dropped:
        unknown = sorted({c for c, k in zip(cids, known) if not k}, key=str)
        log.warning("click log: %d rows of %d campaigns not in the rules are left out (%s%s)", dropped,
                    len(unknown), ", ".join(map(str, unknown[:5])), ", ..." if len(unknown) > 5 else "")
        if not known.any():
            raise TargetingError("no row of the click log names a campaign of the rules", path="campaign_id",
                                 code="unknown_campaign")
        table = table.filter(known)
        values = values[known]
        cids = [c for c, k in zip(cids, known) if k]
    reqs, errors = parse_requests(table, tx, now=0.0)
    if errors:
        first = errors[0]["error"]
        raise TargetingError(f"{len(errors)} invalid rows in the click log; first: {first['message']}",
                             path=str(first.get("path", "")).replace("requests[", "log["), code="bad_log")
    campaign_ids = sorted(set(cids))
    pos = {c: i for i, c in enumerate(campaign_ids)}
    cat_pos = {c: i for i, c in enumerate(tx.categories)}
    spec = FeatureSpec.of(tx)
    true_ctr = None
    if "true_ctr" in table.column_names:
        true_ctr = table.column("true_ctr").to_numpy(zero_copy_only=False).astype(np.float64)
    return {
        "features": spec.user_features(reqs.ts, reqs.gender, reqs.age, reqs.scene, reqs.tags),
        "category": np.array([cat_pos[categories[c]] for c in cids], dtype=np.int64),
        "campaign": np.array([pos[c] for c in cids], dtype=np.int64),
        "campaign_ids": campaign_ids,
        "clicked": values.astype(np.int8),
        "true_ctr": true_ctr,
        "dropped": dropped,
    }


def save_model(out_dir: str | Path, *, spec: FeatureSpec, W: np.ndarray, bias: np.ndarray, campaign: np.ndarray,
               campaign_ids: list[str], calibration: tuple[float, float], metrics: dict[str, Any],
               taxonomy: Taxonomy, rules_version: str) -> dict[str, Any]:
    """Write ``weights.npz`` then ``model.json`` (each via a temporary file and rename)."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / "weights.npz.tmp"
    with open(tmp, "wb") as fh:
        np.savez(fh, W=W, bias=bias, campaign=campaign, campaign_ids=np.array(campaign_ids, dtype=str))
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "version": f"m-{digest[:12]}",
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "feature_spec": spec.to_dict(), "taxonomy_fingerprint": taxonomy_fingerprint(taxonomy),
        "rules_version": rules_version, "calibration": list(calibration), "metrics": metrics,
        "weights": {"file": "weights.npz", "sha256": digest, "arrays": list(ARRAYS)},
    }
    os.replace(tmp, d / "weights.npz")
    jtmp = d / "model.json.tmp"
    jtmp.write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(jtmp, d / "model.json")
    return meta

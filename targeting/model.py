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
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .compiler import CampaignIndex
from .errors import TargetingError
from .localtime import local_minute, local_minutes
from .request import Request
from .taxonomy import UNKNOWN, Taxonomy, gender_index

if TYPE_CHECKING:
    from .batchrequests import Requests

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
        summation order of :meth:`LogisticModel.predict`, which must not change)."""
        lm = local_minutes(ts, MODEL_ZONE)
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


def age_band_of(age: int | None) -> int:
    """:func:`age_band` of one age in years (None: unknown), in plain Python (decide's path)."""
    return 0 if age is None else 1 + bisect.bisect_right(AGE_BAND_EDGES, age)


# ------------------------------------------------------------------ inference
class LogisticModel:
    """A trained model (a :class:`targeting.scoring.SplitModel`), aligned with one taxonomy. Build with :func:`load_model`.

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
        return f"LogisticModel(version={self.version!r}, campaigns={len(self.campaign_ids)})"

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
        # one reduction down the rows: the same sequential sum, in the same order, as feature_logits
        return cast(np.ndarray, np.add.reduce(self.W[self._features_one(request)], axis=0))

    def user_logits(self, reqs: Requests) -> np.ndarray:
        """float64[B, n_categories]: :meth:`user_logit` of every request of a
        :class:`targeting.batchrequests.Requests` block."""
        return self.feature_logits(self.spec.user_features(reqs.ts, reqs.gender, reqs.age, reqs.scene, reqs.tags))

    def predict(self, request: Request, campaigns: np.ndarray, index: CampaignIndex) -> np.ndarray:
        """float64[len(campaigns)]: P(click) of ``request`` for each campaign position."""
        return self.predict_user(self.user_logit(request), campaigns, index)

    def predict_user(self, u: np.ndarray, campaigns: np.ndarray, index: CampaignIndex) -> np.ndarray:
        """:meth:`predict` from the request's :meth:`user_logit` ``u``."""
        campaigns = np.asarray(campaigns, dtype=np.int64)
        cat = index.category[campaigns]
        return self.probability(u[cat], cat, self.campaign_slots(index)[campaigns])

    def _features_one(self, request: Request) -> list[int]:
        """The row of :meth:`FeatureSpec.user_features` for one request, in plain Python (decide's path)."""
        o = self.spec.offset
        band = age_band_of(request.age)
        lm = local_minute(MODEL_ZONE, int(request.ts // 60))
        day, minute = divmod(lm, 1440)
        scene = self._scene_index.get(request.scene, UNKNOWN) if request.scene else UNKNOWN
        feats = [o["age_band"] + band, o["gender"] + gender_index(request.gender), o["hour"] + minute // 60,
                 o["weekday"] + (day + 3) % 7, o["scene"] + scene]
        feats.extend(sorted(self.spec.tag_offset + self._tag_index[t] for t in (request.tags or ())
                            if t in self._tag_index))
        return feats

    def predict_user_pairs(self, users: np.ndarray, req: np.ndarray, camp: np.ndarray,
                           index: CampaignIndex) -> np.ndarray:
        """float64[P]: P(click) of pairs (request ``req[k]`` of a block whose :meth:`user_logits`
        are ``users``, campaign ``camp[k]``); equal to :meth:`predict`."""
        cat = index.category[camp]
        return self.probability(users[req, cat], cat, self.campaign_slots(index)[camp])

    def feature_logits(self, feats: np.ndarray) -> np.ndarray:
        """float64[B, n_categories]: Σ_f W[f, :] over each request's active features (fixed order)."""
        u = np.zeros((feats.shape[0], self.W.shape[1]))
        for f in range(feats.shape[1]):
            u = u + self.W[feats[:, f]]
        return u

    def probability(self, user: np.ndarray, cat: np.ndarray, slot: np.ndarray) -> np.ndarray:
        """P(click) from the user part of the logit and each campaign's category and id weights."""
        z = self.bias[cat.astype(np.int64)] + self.campaign[slot] + user
        return 1.0 / (1.0 + np.exp(-(self.a * z + self.b)))


# ------------------------------------------------------------------ files
def taxonomy_fingerprint(tx: Taxonomy) -> str:
    body = json.dumps([tx.tag_ids, list(tx.scenes), list(tx.categories)], ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _bad(directory: Path, message: str) -> TargetingError:
    return TargetingError(f"model {directory}: {message}", path="model", code="bad_model")


def load_model(directory: str | Path, taxonomy: Taxonomy) -> LogisticModel:
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
    return LogisticModel(version=version, spec=FeatureSpec.of(taxonomy), W=W, bias=bias,
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
def train(log_path: str | Path, **options: Any) -> dict[str, Any]:
    """Fit the click model on a click log and write the model directory: see
    :func:`targeting.training.train` (scikit-learn is imported there, never on the request path)."""
    from .training import train as fit

    return fit(log_path, **options)


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


__all__ = ["FeatureSpec", "LogisticModel", "age_band", "age_band_of", "load_model", "save_model",
           "train"]

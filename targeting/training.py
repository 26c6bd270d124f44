"""Training the click model (``targeting train``): a click log → :class:`targeting.model.LogisticModel`.

A logistic regression (scikit-learn) on the features of :class:`targeting.model.FeatureSpec`,
each crossed with the category, folded into the model's arrays, with a Platt calibration
fitted on a held-out slice; the model directory is written by :func:`targeting.model.save_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import TargetingError
from .model import FeatureSpec, LogisticModel, log, save_model
from .progress import Progress
from .taxonomy import Taxonomy


def train(
    log_path: str | Path, *, rules_dir: str | Path, out_dir: str | Path, holdout: float = 0.2,
    calibration: float = 0.1, C: float = 0.1, seed: int = 0, progress: bool = True,
) -> dict[str, Any]:
    """Fit the click model on a click log (docs/files.md) and write the model directory.

    ``holdout`` of the rows (random, seeded) are kept for the metrics, and
    ``calibration`` of the rest for the Platt calibration. Log rows whose
    campaign is not in the rules are dropped with a warning (their category is
    unknown). Returns the metrics: held-out ``auc``/``log_loss`` of the model,
    ``truth_auc``/``truth_log_loss`` of the log's ``true_ctr`` on the same rows
    when present, ``base_log_loss`` (a constant CTR), row and click counts.
    """
    # three steps, each named on the bar: the log read, the fit, the calibration and metrics
    with Progress("train", total=3, unit="steps", enabled=progress) as bar:
        return _train(log_path, rules_dir=rules_dir, out_dir=out_dir, holdout=holdout,
                      calibration=calibration, C=C, seed=seed, bar=bar)


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

    tx = Taxonomy.load(Path(rules_dir) / "taxonomy")
    ruleset = load_rules(rules_dir, tx)
    data = read_log(log_path, tx, {c.id: c.category for c in ruleset.campaigns})
    n = data["clicked"].size
    say(f"{n:,} rows, {int(data['clicked'].sum()):,} clicks, {len(data['campaign_ids'])} campaigns"
        f" ({time.perf_counter() - t0:.1f}s)")
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
    say(f"fitting logistic regression on {fit.size:,} rows x {X.shape[1]:,} features")
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
    raw_model = LogisticModel(version="raw", spec=spec, W=W, bias=bias, campaign=camp_w,
                           campaign_ids=data["campaign_ids"], calibration=(1.0, 0.0), meta={})
    a, b = 1.0, 0.0
    if cal.size and y[cal].min() != y[cal].max():
        z = _logit(_predict_rows(raw_model, data, cal))
        platt = LogisticRegression(C=1e6, max_iter=200).fit(z[:, None], y[cal])
        a, b = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    model = LogisticModel(version="new", spec=spec, W=W, bias=bias, campaign=camp_w,
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
    say(_metrics_line(metrics))
    return metrics


def _metrics_line(m: dict[str, Any]) -> str:
    line = f"held-out AUC {m['auc']:.4f}, log-loss {m['log_loss']:.5f} (constant CTR: {m['base_log_loss']:.5f})"
    if "truth_auc" in m:
        line += f"; ground truth on the same rows: AUC {m['truth_auc']:.4f}, log-loss {m['truth_log_loss']:.5f}"
    return line


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def _predict_rows(model: LogisticModel, data: dict[str, Any], rows: np.ndarray) -> np.ndarray:
    cat = data["category"][rows]
    user = model.feature_logits(data["features"][rows])[np.arange(rows.size), cat]
    return model.probability(user, cat, data["campaign"][rows])


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


__all__ = ["read_log", "train"]

"""Click model against its ground truth, and decide latency with the model against priors.

    python benchmarks/bench_model.py [--rows 1000000] [--campaigns 300] [--decide 3000]

Generates campaigns (``targeting.gen``) and a click log from the documented
ground truth (``targeting.clicklog``), trains (``targeting.model.train``) and
prints held-out AUC / log-loss of the model next to the truth's on the same
rows (goal: AUC within 0.01, log-loss within 3%). Then times ``Engine.decide``
on the same requests with priors and with the loaded model, in the same run,
and batch scoring (``targeting.batch.score``) of ``--batch`` requests with each.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from targeting.batch import score
from targeting.batchrequests import request_from_row
from targeting.clicklog import generate_log, generate_requests
from targeting.compiler import compile_campaigns
from targeting.engine import Engine, settle_heap
from targeting.gen import generate_campaigns
from targeting.model import load_model, train
from targeting.rules import validate_campaigns
from targeting.scoring import PriorModel
from targeting.stores.memory import MemoryStore
from targeting.taxonomy import Taxonomy

RULES = Path(__file__).resolve().parents[1] / "rules"



def request_dicts(path: Path, n: int) -> list[dict]:
    return [request_from_row(r) for r in pq.read_table(path).slice(0, n).to_pylist()]


def latency(engine: Engine, raws: list[dict]) -> np.ndarray:
    for raw in raws[:100]:  # warm caches
        engine.decide(raw)
    out = np.empty(len(raws))
    for i, raw in enumerate(raws):
        t = time.perf_counter()
        engine.decide(raw)
        out[i] = time.perf_counter() - t
    return out * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--campaigns", type=int, default=300)
    ap.add_argument("--decide", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=200_000, help="requests to batch-score with each model")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    tx = Taxonomy.load(RULES / "taxonomy")
    camps = generate_campaigns(args.campaigns, tx, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "campaigns").mkdir()
        from targeting.gen import write_campaigns

        write_campaigns(camps, d / "campaigns")
        (d / "taxonomy").symlink_to(RULES / "taxonomy")
        engine = Engine.load(d)
        t = time.perf_counter()
        info = generate_log(d / "log.parquet", args.rows, engine=engine, seed=args.seed, progress=False)
        t_log = time.perf_counter() - t
        t = time.perf_counter()
        m = train(d / "log.parquet", rules_dir=d, out_dir=d / "model", progress=False)
        t_train = time.perf_counter() - t

        print(f"\nclick log: {info['rows']:,} rows, {info['clicks']:,} clicks, {info['campaigns']} campaigns, "
              f"{info['ineligible_rows']:,} rows without an eligible campaign; generated in {t_log:.1f}s "
              f"({info['rows'] / t_log:,.0f} rows/s); trained in {t_train:.1f}s")
        print(f"held-out rows: {m['test_rows']:,} ({m['test_clicks']:,} clicks)\n")
        print(f"{'':24}{'AUC':>10}{'log-loss':>12}")
        print(f"{'ground truth':24}{m['truth_auc']:>10.4f}{m['truth_log_loss']:>12.5f}")
        print(f"{'model':24}{m['auc']:>10.4f}{m['log_loss']:>12.5f}")
        print(f"{'constant CTR':24}{'0.5':>10}{m['base_log_loss']:>12.5f}")
        gap, ratio = m["truth_auc"] - m["auc"], m["log_loss"] / m["truth_log_loss"]
        print(f"\nAUC gap to truth {gap:+.4f} (goal <= 0.01: {'met' if gap <= 0.01 else 'NOT met'}); "
              f"log-loss / truth {ratio:.4f} (goal <= 1.03: {'met' if ratio <= 1.03 else 'NOT met'})")

        generate_requests(d / "req.parquet", args.decide, taxonomy=tx, seed=args.seed + 1, progress=False)
        raws = request_dicts(d / "req.parquet", args.decide)
        now = time.time()
        campaigns = validate_campaigns([("gen.yaml", camps)], tx)
        index = compile_campaigns(campaigns, tx, "bench")
        model = load_model(d / "model", tx)
        prior = Engine(tx, index, store=MemoryStore(), model=PriorModel(), clock=lambda: now)
        learned = Engine(tx, index, store=MemoryStore(), model=model, clock=lambda: now)
        settle_heap()  # as a long-running process would (targeting serve does)
        lp, lm = latency(prior, raws), latency(learned, raws)
        print(f"\ndecide latency, {args.campaigns} campaigns, {len(raws):,} requests (microseconds)")
        print(f"{'':16}{'p50':>10}{'p99':>10}{'mean':>10}")
        for name, lat in (("priors", lp), ("learned model", lm)):
            print(f"{name:16}{np.percentile(lat, 50):>10.0f}{np.percentile(lat, 99):>10.0f}{lat.mean():>10.0f}")
        print(f"model / priors: p50 x{np.percentile(lm, 50) / np.percentile(lp, 50):.2f}, "
              f"p99 x{np.percentile(lm, 99) / np.percentile(lp, 99):.2f}")

        if args.batch:
            generate_requests(d / "batch.parquet", args.batch, taxonomy=tx, seed=args.seed + 2, end=now,
                              progress=False)
            print(f"\nbatch scoring, {args.batch:,} requests, one process")
            rates = {}
            for name, engine in (("priors", prior), ("learned model", learned)):
                r = score(engine, d / "batch.parquet", d / f"out-{name[0]}.parquet", progress=False)
                rates[name] = r["requests"] / r["seconds"]
                print(f"{name:16}{rates[name]:>12,.0f} requests/s")
            print(f"model / priors: x{rates['learned model'] / rates['priors']:.2f} throughput")


if __name__ == "__main__":
    main()

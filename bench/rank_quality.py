"""The ranker against its baselines and the oracle, and the two stages against retrieval alone.

    python bench/rank_quality.py [--impressions 200000] [--conversion-rate 0.1] [--set KEY=VALUE ...]
                                 [--compare-crosses]

Runs the demo pipeline (lakerec.jobs.demo: generate -> ingest -> filter -> two-tower ->
impressions -> ranker with its evaluation and the two-stage run) on a fresh lake under
bench/out/rank_quality, so every method is scored on the same test_impressions rows in one
run, then prints the issue's targets with the measured figures:

    CTR AUC within 0.02 of the oracle's (position-free: the ranker never sees position at
    scoring) and above every baseline; CVR AUC above item CTR and logistic regression;
    two-stage NDCG@10 above retrieval alone.

--compare-crosses then runs the two stages again with the same ranker, two-tower and
candidates but the other rank.candidate_crosses (computed / absent:
lakerec.ranking.candidate_crosses) and prints both side by side.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out" / "rank_quality"


def verdicts(evaluation: dict) -> list[str]:
    """One line per target: the figures and met / missed."""
    methods = evaluation["methods"]
    ranker = next(v for m, v in methods.items() if m.startswith("ranker"))
    oracle = methods.get("oracle (no position)")
    baselines = {m: v for m, v in methods.items() if not m.startswith(("ranker", "oracle"))}
    lines = []

    def line(text: str, ok: bool) -> None:
        lines.append(f"{'met   ' if ok else 'MISSED'} {text}")

    if oracle:
        gap = oracle["ctr_auc"] - ranker["ctr_auc"]
        line(f"CTR AUC {ranker['ctr_auc']:.4f} within 0.02 of the oracle's {oracle['ctr_auc']:.4f} (gap {gap:.4f})",
             gap <= 0.02)
    best = max(baselines, key=lambda m: baselines[m]["ctr_auc"])
    line(f"CTR AUC above every baseline (best: {best} {baselines[best]['ctr_auc']:.4f})",
         ranker["ctr_auc"] > baselines[best]["ctr_auc"])
    for name in ("item CTR", "logistic regression"):
        if name in baselines and baselines[name].get("cvr_auc") is not None:
            line(f"CVR AUC {ranker['cvr_auc']:.4f} above {name}'s {baselines[name]['cvr_auc']:.4f}",
                 ranker["cvr_auc"] > baselines[name]["cvr_auc"])
    two_stage = evaluation.get("two_stage") or {}
    stages = two_stage.get("metrics", {})
    if "retrieval alone" in stages and "retrieval + ranker" in stages:
        alone, both = stages["retrieval alone"]["ndcg@10"], stages["retrieval + ranker"]["ndcg@10"]
        line(f"two-stage NDCG@10 {both:.4f} above retrieval alone {alone:.4f} "
             f"(candidate crosses {two_stage.get('candidate_crosses')})", both > alone)
    return lines


def compare_crosses(cfg, evaluation: dict) -> str:
    """The two-stage run again with the other rank.candidate_crosses; both as one table."""
    from lakerec.config import override
    from lakerec.ranking import two_stage as TS
    from lakerec.ranking.candidate_crosses import ABSENT, COMPUTED
    from lakerec.spark import get_spark

    first = evaluation["two_stage"]
    other = ABSENT if first["candidate_crosses"] == COMPUTED else COMPUTED
    cfg = override(cfg, raw=str(cfg.lake_path / "raw"), rank__candidate_crosses=other)
    second = TS.run(get_spark(cfg), cfg, evaluation["model_uri"], evaluation["two_tower_run"])
    runs = sorted((first, second), key=lambda r: r["candidate_crosses"])
    k = first["k"]
    labels = [f"{m} ({r['candidate_crosses']})" for r in runs for m in (f"recall@{k}", f"NDCG@{k}")]
    head = f"{'method':<22}" + "".join(f"{label:>24}" for label in labels)
    lines = [f"Two stages, candidate cross fields {' vs '.join(r['candidate_crosses'] for r in runs)} "
             f"({first['users']:,} users, {first['candidates']} candidates, re-ranked by {first['rerank_by']})",
             head, "-" * len(head)]
    for stage in TS.STAGES:
        if all(stage in r["metrics"] for r in runs):
            lines.append(f"{stage:<22}" + "".join(f"{r['metrics'][stage][m]:>24.4f}"
                                                  for r in runs for m in (f"recall@{k}", f"ndcg@{k}")))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impressions", type=int, default=200_000)
    p.add_argument("--users", type=int, default=2_000)
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--conversion-rate", type=float, default=0.1)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override")
    p.add_argument("--compare-crosses", action="store_true",
                   help="also run the two stages with the other rank.candidate_crosses, side by side")
    args = p.parse_args()

    from lakerec.config import load_config, parse_assignment
    from lakerec.jobs import demo

    shutil.rmtree(OUT, ignore_errors=True)
    cfg = load_config(REPO / "conf" / "local.yml", dict(parse_assignment(s) for s in args.set), lake=str(OUT))
    out = demo.run(cfg, args.impressions, args.users, args.items, seed=42, conversion_rate=args.conversion_rate)
    print("\nTargets (issue 11):")
    print("\n".join(verdicts(out["ranked"]["evaluation"])))
    if args.compare_crosses:
        print("\n" + compare_crosses(cfg, out["ranked"]["evaluation"]))


if __name__ == "__main__":
    main()

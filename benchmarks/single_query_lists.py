"""Can one query vector per user rank MMR's list first? Where the trade-off's bound lies, adapter or ranking.

    MLFLOW_TRACKING_URI=sqlite:////tmp/s9/mlflow.db python benchmarks/single_query_lists.py --sweep RUN_ID

An adapter moves the user's state, and the list is the top 10 of the dot products of that one vector with the
item embeddings. MMR's lists are picked item by item for the categories they add (BENCHMARKS §7: above the swept
adapters on both metrics at most weights). If no single vector puts a user's MMR list first, no state adapter of
any size can serve it and only list-level decoding can; if one does for most users, the bound is the adapter (one
map shared by all users, trained on a smoothed loss), not the ranking. Per test user and MMR λ, an LP finds the
query q (free, d numbers) with the largest margin by which it scores the list in MMR's order and its last item
above every other item the full ranking can show (the user's history masked); a positive margin means one
vector serves exactly that list. Order matters: NDCG and α-NDCG discount by position.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.optimize import linprog

from padirec import tracking
from padirec.evaluation.baselines import MMR, Scorer
from padirec.evaluation.ranking import rank_metrics


def orderable(items: np.ndarray, shown: np.ndarray, lists: np.ndarray) -> np.ndarray:
    """Per user: the largest margin t of a query q in [-1, 1]^d that ranks its list first and in its order
    (q·e_1 ≥ q·e_2 + t ≥ … , q·e_k ≥ q·e_j + t for every other item j it may show, `shown [N, items]`), an LP
    (scipy's HiGHS) over the item embeddings `items [items, d]`. t > 0: one vector serves exactly that list."""
    d = items.shape[1]
    margins = np.empty(len(lists))
    for u, ranked in enumerate(lists):
        others = np.flatnonzero(shown[u] & ~np.isin(np.arange(len(items)), ranked))
        pairs = np.concatenate([items[ranked[:-1]] - items[ranked[1:]], items[ranked[-1]] - items[others]])
        a_ub = np.hstack([-pairs, np.ones((len(pairs), 1))])  # t - q·(e_a - e_b) <= 0
        result = linprog(np.r_[np.zeros(d), -1.0], A_ub=a_ub, b_ub=np.zeros(len(pairs)),
                         bounds=[(-1, 1)] * d + [(None, 1)], method="highs")
        margins[u] = -result.fun if result.status == 0 else np.nan
    return margins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", required=True, help="a sweep's parent run id (its backbone and data)")
    parser.add_argument("--lambdas", default="0,0.3,0.5,0.7")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tracking.setup()
    from padirec.sweep.run import load_sweep_setting

    setting = load_sweep_setting(args.sweep)
    backbone, data = setting.backbone, setting.data  # loaded frozen, in eval mode
    scorer = Scorer.build(backbone, data, "test")
    mmr = MMR()
    candidates = mmr.top_candidates(scorer)
    embeddings = backbone.i_embeddings.weight.detach().double().numpy()
    shown = ~scorer.eval_set.excluded.numpy()
    shown[:, 0] = False  # the padding item
    base = {key: float(v[0]) for key, v in rank_metrics(backbone, scorer.eval_set, states=scorer.states).items()}
    print(f"sweep {args.sweep}: {len(scorer.states)} test users, {backbone.i_embeddings.num_embeddings - 1} items, "
          f"d = {scorer.states.shape[1]}; backbone NDCG@10 / α-NDCG@10 {base['ndcg10']:.4f} / "
          f"{base['alpha_ndcg10']:.3f}\n")
    print("| MMR λ | MMR's lists: NDCG@10 / α-NDCG@10 | lists one query vector ranks first, in MMR's order | "
          "median margin |\n| --- | --- | --- | --- |")
    for lam in (float(x) for x in args.lambdas.split(",")):
        lists = mmr.rankings(scorer, lam, candidates)
        target = scorer.list_metrics(lists)
        margins = orderable(embeddings, shown, lists.numpy())
        print(f"| {lam:g} | {target['ndcg10']:.4f} / {target['alpha_ndcg10']:.3f} | {(margins > 1e-9).mean():.1%} | "
              f"{np.nanmedian(margins):.2g} |", flush=True)


if __name__ == "__main__":
    main()

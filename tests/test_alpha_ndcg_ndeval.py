"""α-NDCG@10 (`alpha_ndcg_at_k` with `ideal_alpha_dcg`) against TREC's reference code, ndeval.c, on random cases.

How a case maps onto ndeval (through `pyndeval`, which wraps ndeval.c):

- one ranked list of items = one query's run: the k items, scores k, k−1, ..., 1 (no ties in the run);
- the categories are the subtopics, and *every item with a category is judged relevant to each of its categories*
  (and to nothing else). ndeval computes its ideal ranking greedily over the judged relevant documents; ours is
  greedy over all items' categories. With every categorised item judged, the two greedy loops see the same
  candidates (an item without a category adds nothing to either);
- ties in the greedy ideal: ndeval keeps the largest docno among equal gains, our `argmax` the lowest item index,
  so item i is docno `10**6 − i` (fixed width: string order is numeric order). The gains are sums of powers of
  1 − α = 1/2, exact in floating point, so both sides see the same ties;
- the same gain (1 − α)^(times the category was seen above), discount 1 / log2(rank + 1), cutoff 10, α = 0.5.
  ndeval divides both DCGs by an "ideal ideal" first, which cancels in the ratio.
"""

import numpy as np
import pytest
import torch

from padirec.metrics import alpha_ndcg_at_k, ideal_alpha_dcg

pyndeval = pytest.importorskip("pyndeval", reason="pyndeval (TREC ndeval.c) is not installed: pip install -e '.[dev]'")

K, ALPHA = 10, 0.5


def docno(item: int) -> str:
    return str(10**6 - item)


def random_case(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-hot categories `[n_items + 1, M]` (row 0 = padding) with at least one categorised item, and a few
    users' top-K lists `[users, K]` of distinct items."""
    n_items, n_categories = int(rng.integers(K, 40)), int(rng.integers(2, 9))
    while True:
        density = rng.uniform(0.1, 0.6)
        categories = (rng.random((n_items, n_categories)) < density) & (rng.random((n_items, 1)) > rng.uniform(0, 0.7))
        if categories.any():
            break
    table = torch.as_tensor(np.vstack([np.zeros((1, n_categories), bool), categories]), dtype=torch.float32)
    lists = torch.as_tensor(np.stack([rng.permutation(n_items)[:K] + 1 for _ in range(int(rng.integers(1, 6)))]))
    return table, lists


def ndeval_alpha_ndcg(table: torch.Tensor, lists: torch.Tensor) -> np.ndarray:
    qrels = [pyndeval.SubtopicQrel(f"q{u}", str(c), docno(i), 1)
             for u in range(len(lists)) for i, c in zip(*np.nonzero(table.numpy()))]
    run = [pyndeval.ScoredDoc(f"q{u}", docno(int(item)), float(K - rank))
           for u, row in enumerate(lists) for rank, item in enumerate(row)]
    result = pyndeval.ndeval(qrels, run, measures=[f"alpha-nDCG@{K}"], alpha=ALPHA)
    return np.array([result[f"q{u}"][f"alpha-nDCG@{K}"] for u in range(len(lists))])


def test_alpha_ndcg_matches_trec_ndeval_on_random_cases():
    rng = np.random.default_rng(0)
    for case in range(300):
        table, lists = random_case(rng)
        ours = alpha_ndcg_at_k(lists, table, ALPHA, ideal_alpha_dcg(table, K, ALPHA)).numpy()
        np.testing.assert_allclose(ours, ndeval_alpha_ndcg(table, lists), rtol=1e-5, atol=1e-7,
                                   err_msg=f"case {case}")


def test_a_hand_made_case_agrees_too():
    """The hand-computed case of test_metrics (items 1:{A}, 2:{A}, 3:{B}, 4:{A,B}), here at cutoff 3 and 10."""
    table = torch.tensor([[0, 0], [1, 0], [1, 0], [0, 1], [1, 1]], dtype=torch.float32)
    qrels = [("q", c, docno(i), 1) for i, c in ((1, "A"), (2, "A"), (3, "B"), (4, "A"), (4, "B"))]
    run = [("q", docno(1), 3.0), ("q", docno(2), 2.0), ("q", docno(3), 1.0)]
    result = pyndeval.ndeval(qrels, run, measures=["alpha-nDCG@3", "alpha-nDCG@10"], alpha=ALPHA)["q"]
    lists = torch.tensor([[1, 2, 3]])
    assert result["alpha-nDCG@3"] == pytest.approx(float(alpha_ndcg_at_k(lists, table, ALPHA)[0]), rel=1e-6)
    # at cutoff 10 the ideal also holds the 4th item, the list does not grow: our ideal at k=10 over 4 items
    assert result["alpha-nDCG@10"] == pytest.approx(
        float(alpha_ndcg_at_k(lists, table, ALPHA, ideal_alpha_dcg(table, 10, ALPHA))[0]), rel=1e-6)

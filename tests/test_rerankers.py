"""The MMR and DPP re-rankers on synthetic multi-category items (≥ 5 overlapping categories each, as in catalogues
whose items carry a dozen): at least as diverse as the score order below λ = 1, the score order at λ = 1, DPP's
incremental Cholesky against a brute-force log-det greedy, batching, and finiteness at the ends of λ."""

import pytest
import torch

from padirec.evaluation import rerank
from padirec.evaluation.rerank import category_kernel, dpp_rerank, mmr_rerank
from padirec.metrics import alpha_dcg, alpha_ndcg_at_k, ideal_alpha_dcg

RERANKERS = {"MMR": mmr_rerank, "DPP": dpp_rerank}
K, ALPHA = 10, 0.5


def multi_category_items(n_items: int, n_categories: int = 24, seed: int = 0) -> torch.Tensor:
    """Multi-hot `[n_items, n_categories]`: 5 to 8 categories per item drawn at random, so items overlap."""
    g = torch.Generator().manual_seed(seed)
    y = torch.zeros(n_items, n_categories)
    for i in range(n_items):
        count = int(torch.randint(5, 9, (1,), generator=g))
        y[i, torch.randperm(n_categories, generator=g)[:count]] = 1.0
    return y


def diversity(lists: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """α-NDCG@10 of each list of item ids against the greedy ideal over the items."""
    return alpha_ndcg_at_k(lists, y, ALPHA, ideal_alpha_dcg(y, K, ALPHA))


def rerank_all(name: str, scores: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """Every row's candidates are all items, so positions are item ids."""
    return RERANKERS[name](scores, y.expand(len(scores), -1, -1), lam, K)


@pytest.fixture(scope="module")
def users() -> tuple[torch.Tensor, torch.Tensor]:
    """32 users' random scores over 80 multi-category items."""
    return torch.randn(32, 80, generator=torch.Generator().manual_seed(1)), multi_category_items(80)


@pytest.mark.parametrize("name", RERANKERS)
def test_below_lambda_one_lists_are_at_least_as_diverse_and_at_one_are_the_score_order(name, users):
    """On the mean over the users: a greedy re-ranker promises nothing row by row."""
    scores, y = users
    order = scores.topk(K, dim=-1).indices
    assert torch.equal(rerank_all(name, scores, y, 1.0), order)
    plain = diversity(order, y).mean()
    for lam in (0.0, 0.25, 0.5, 0.75, 0.9, 0.99):
        assert diversity(rerank_all(name, scores, y, lam), y).mean() >= plain - 1e-6, lam
    assert diversity(rerank_all(name, scores, y, 0.5), y).mean() > plain + 0.01


@pytest.mark.parametrize("name", RERANKERS)
def test_top_scored_items_sharing_categories_get_broken_up_at_lambda_half(name):
    y = multi_category_items(60, seed=2)
    y[:10] = 0.0
    y[:10, :6] = 1.0  # the ten best-scored items all carry the same six categories
    scores = torch.linspace(1.0, 0.0, 60)[None]
    order = scores.topk(K, dim=-1).indices
    assert torch.equal(order, torch.arange(K)[None])
    assert diversity(rerank_all(name, scores, y, 0.5), y) > diversity(order, y) + 0.2


def test_mmr_gain_counts_the_new_categories_a_multi_category_item_adds():
    # item 1 repeats item 0's five categories and adds five new ones; item 2 adds one new category.
    # Jaccard (0.5 against 0) preferred item 2; the coverage gain (0.5·5 + 5 = 7.5 against 1) prefers item 1.
    y = torch.zeros(3, 11)
    y[0, :5] = y[1, :10] = y[2, 10] = 1.0
    scores = torch.tensor([[3.0, 1.0, 2.0]])  # relevance 1, 0, 0.5
    # λ = 0.5 after item 0: item 1 0.5·0 + 0.5·7.5/10 = 0.375 > item 2 0.5·0.5 + 0.5·1/10 = 0.3
    assert mmr_rerank(scores, y[None], 0.5, 3).tolist() == [[0, 1, 2]]
    assert alpha_dcg(torch.tensor([0, 1, 2]), y, ALPHA) > alpha_dcg(torch.tensor([0, 2, 1]), y, ALPHA)
    assert mmr_rerank(scores, y[None], 1.0, 3).tolist() == [[0, 2, 1]]


def test_mmr_at_lambda_zero_is_the_greedy_alpha_dcg_ideal(users):
    scores, y = users
    lists = rerank_all("MMR", scores, y, 0.0)
    assert torch.allclose(diversity(lists, y), torch.ones(len(scores)))


def brute_force_greedy_map(relevance: torch.Tensor, y: torch.Tensor, lam: float, k: int, jitter: float) -> list[int]:
    """Greedy log det L_Y with L formed explicitly: r = exp(θ·relevance), θ = λ/(2(1 − λ)), S = shared categories
    over the largest category count + jitter·I."""
    x = y.double()
    r = torch.exp(lam / (2 * (1 - lam)) * relevance.double())
    kernel = r[:, None] * (x @ x.T / x.sum(1).max() + jitter * torch.eye(len(y), dtype=torch.float64)) * r[None]
    chosen: list[int] = []
    for _ in range(k):
        gains = {i: torch.linalg.slogdet(kernel[chosen + [i]][:, chosen + [i]])[1] for i in range(len(y))
                 if i not in chosen}
        chosen.append(max(gains, key=gains.get))
    return chosen


@pytest.mark.parametrize("lam", [0.2, 0.5, 0.8, 0.95])
def test_dpp_incremental_cholesky_matches_a_brute_force_log_det_greedy(lam):
    g = torch.Generator().manual_seed(3)
    y = (torch.rand(14, 7, generator=g) < 0.5).float()
    y[y.sum(1) == 0, 0] = 1.0
    relevance = torch.linspace(0.0, 1.0, 14)[torch.randperm(14, generator=g)]  # already min–max scaled
    expected = brute_force_greedy_map(relevance, y, lam, 8, 1e-3)
    assert dpp_rerank(relevance[None], y[None], lam, 8, 1e-3)[0].tolist() == expected


def test_dpp_kernel_counts_shared_categories_so_larger_sets_span_more():
    # items {0, 1}, {2}, {0, 2, 3, 4} and one without categories
    y = torch.tensor([[1.0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [1, 0, 1, 1, 1], [0, 0, 0, 0, 0]])
    shared = torch.tensor([[2.0, 0, 1, 0], [0, 1, 1, 0], [1, 1, 4, 0], [0, 0, 0, 0]])
    assert torch.allclose(category_kernel(y, 0.01), (shared / 4 + 0.01 * torch.eye(4)).double())
    # after item 0, item 2 (three new categories, α-DCG gain 3.5) beats item 1 (one, gain 1) at equal relevance;
    # cosine would take item 1: orthogonal to item 0, while item 2's cosine with it is 1/√8
    relevance = torch.tensor([[1.0, 0.5, 0.5, 0.0]])
    assert dpp_rerank(relevance, y[None], 0.8, 3, 0.01).tolist() == [[0, 2, 1]]


@pytest.mark.parametrize("name", RERANKERS)
def test_batched_rows_equal_one_row_at_a_time(name, users):
    scores, y = users
    categories = torch.stack([y[torch.randperm(80, generator=torch.Generator().manual_seed(i))] for i in range(8)])
    batched = RERANKERS[name](scores[:8], categories, 0.6, K)
    alone = torch.cat([RERANKERS[name](scores[i : i + 1], categories[i : i + 1], 0.6, K) for i in range(8)])
    assert torch.equal(batched, alone)


@pytest.mark.parametrize("name", RERANKERS)
def test_finite_and_never_repeating_at_the_ends_of_lambda(name, monkeypatch):
    y = multi_category_items(30, seed=4)
    rows = y.expand(4, -1, -1).clone()
    rows[1] = rows[1, :1]  # every item alike: DPP's conditional variances fall to the jitter
    rows[2, :5] = 0.0  # items without categories
    scores = torch.randn(4, 30, generator=torch.Generator().manual_seed(5)) * 1e3  # a wide score range
    scores[3, 6:] = float("-inf")  # only 6 of 30 available, fewer than k
    seen, pick = [], rerank.pick

    def checked_pick(value, available, taken):
        assert torch.isfinite(value[available]).all()
        seen.append(value)
        return pick(value, available, taken)

    monkeypatch.setattr(rerank, "pick", checked_pick)
    for lam in (0.0, 0.5, 0.99, 1.0):
        lists = RERANKERS[name](scores, rows, lam, K)
        assert all(len(set(row)) == K for row in lists.tolist()) and int(lists.max()) < 30
        assert set(lists[3, :6].tolist()) == set(range(6))  # the available ones first
    assert len(seen) == 4 * K

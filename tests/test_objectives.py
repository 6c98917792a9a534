import itertools
import math

import torch

from padirec.metrics import alpha_dcg
from padirec.objectives import (
    CategoryTable,
    bce_loss,
    diversity_loss,
    objective_losses,
    soft_alpha_dcg,
    weighted_loss,
)

A, B = [1.0, 0.0], [0.0, 1.0]


def as_lists(categories):
    """(items, table) for the lists of a `[C, M]` multi-hot (or `[B, C, M]`: one list per row), in the padded-id
    form (the dense one is checked against it below)."""
    items = torch.arange(categories.shape[:-1].numel()).reshape(categories.shape[:-1])
    return items, CategoryTable.from_multi_hot(categories.reshape(-1, categories.shape[-1]), sparse=True)


def dense_soft_alpha_dcg(scores, categories, alpha=0.5, temperature=0.1):
    """The loss written over all M categories (the form before `CategoryTable`): the reference."""
    above = torch.sigmoid((scores[..., :, None] - scores[..., None, :]) / temperature)
    above = above * (1 - torch.eye(scores.shape[-1]))
    covered = above.transpose(-1, -2) @ categories
    gain = (categories * (1 - alpha) ** covered).sum(-1)
    return (gain / torch.log2(2 + above.sum(-2))).sum(-1)


def exact_alpha_dcg(scores, categories, alpha=0.5):
    order = torch.argsort(scores, descending=True)
    return float(alpha_dcg(order[None], categories, alpha)[0])


def test_alpha_dcg_counts_repeats_above_not_below():
    # DESIGN §7 (a): scores [3, 2, 1], categories [A, A, B] -> gains [1, 0.5, 1]
    scores = torch.tensor([3.0, 2.0, 1.0])
    categories = torch.tensor([A, A, B])
    expected = torch.tensor(1 + 0.5 / math.log2(3) + 1 / 2)
    assert torch.isclose(soft_alpha_dcg(scores, *as_lists(categories), temperature=1e-3), expected, atol=1e-4)
    assert abs(exact_alpha_dcg(scores, categories) - float(expected)) < 1e-6


def test_soft_alpha_dcg_approaches_exact_as_temperature_goes_to_zero():
    torch.manual_seed(0)
    scores = torch.randn(8)
    categories = (torch.rand(8, 4) < 0.4).float()
    exact = exact_alpha_dcg(scores, categories)
    items, table = as_lists(categories)
    temperatures = (1.0, 0.1, 0.01, 1e-4)
    errors = [abs(float(soft_alpha_dcg(scores, items, table, temperature=t)) - exact) for t in temperatures]
    assert errors[-1] < 1e-4
    assert all(a >= b - 1e-9 for a, b in itertools.pairwise(errors))


def test_diversity_gradient_pushes_a_new_category_above_a_repeat():
    scores = torch.tensor([[3.0, 2.0, 1.9]], requires_grad=True)
    categories = torch.tensor([[A, A, B]])
    diversity_loss(scores, *as_lists(categories), temperature=0.1).backward()
    step = -scores.grad[0]  # gradient descent direction
    assert step[2] > 0 > step[1]  # the B item rises, the repeated A item falls


def test_bce_prefers_positive_first():
    good = torch.tensor([[2.0, -1.0, -1.0]])
    bad = torch.tensor([[-1.0, 2.0, -1.0]])
    assert bce_loss(good) < bce_loss(bad)


def test_weighted_loss_batches_over_packed_adapters():
    scores = torch.randn(3, 5, 10)  # K=3 adapters, batch 5, 10 candidates
    categories = (torch.rand(5, 10, 4) < 0.3).float()
    losses = objective_losses(scores, *as_lists(categories))
    assert losses.shape == (3, 2)
    for k in range(3):
        assert torch.allclose(losses[k], objective_losses(scores[k], *as_lists(categories)), atol=1e-6)
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.3, 0.7]])
    total = weighted_loss(losses, w)
    assert torch.allclose(total, torch.stack([losses[0, 0], losses[1, 1], 0.3 * losses[2, 0] + 0.7 * losses[2, 1]]))


def test_padded_category_ids_give_the_dense_loss_on_a_large_sparse_catalogue():
    # 600 categories, 1-8 per item (the shape on which the dense [.., C, M] form was slow)
    torch.manual_seed(0)
    multi_hot = torch.zeros(51, 600)
    for item in range(1, 51):
        multi_hot[item, torch.randperm(600)[: int(torch.randint(1, 9, ()))]] = 1.0
    multi_hot[7] = 0.0  # an item without categories
    table = CategoryTable.from_multi_hot(multi_hot)
    assert table.ids.shape == (51, 8) and table.sparse  # 600 > 16 x 8: the padded ids
    dense_table = CategoryTable.from_multi_hot(multi_hot, sparse=False)
    candidates = torch.randint(0, 51, (4, 12))  # 4 lists of 12, repeats allowed
    scores = torch.randn(3, 4, 12, requires_grad=True)  # 3 packed adapters
    reference = dense_soft_alpha_dcg(scores, multi_hot[candidates])
    (g_reference,) = torch.autograd.grad(reference.sum(), scores)
    for form in (table, dense_table):
        value = soft_alpha_dcg(scores, candidates, form)
        (gradient,) = torch.autograd.grad(value.sum(), scores)
        assert torch.allclose(value, reference, atol=1e-5) and torch.allclose(gradient, g_reference, atol=1e-5)
    assert not CategoryTable.from_multi_hot(multi_hot[:, :16]).sparse  # few categories: the dense product

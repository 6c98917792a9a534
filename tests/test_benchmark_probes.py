"""The probes behind BENCHMARKS §7's eighth-session finding: a list one query vector can rank first (an LP), and
the Plackett–Luce loss that adapters learn MMR's lists with."""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from adapter_capacity import list_mle  # noqa: E402
from single_query_lists import orderable  # noqa: E402


def test_a_list_is_orderable_only_where_one_vector_scores_it_first_in_its_order():
    # on a line through the origin a query orders items by their coordinate, one way or the other
    line = np.array([[0.0], [1.0], [2.0], [3.0]])
    shown = np.ones((3, 4), dtype=bool)
    shown[:, 0] = False
    margins = orderable(line, shown, np.array([[3, 2], [1, 2], [3, 1]]))
    assert margins[0] > 0  # 3 > 2 > 1: q > 0
    assert margins[1] > 0  # 1 > 2 > 3: q < 0
    assert margins[2] <= 1e-9  # 3 above 1 but 2 below 1: no q does that
    # the set {2, 3} comes first for q > 0, but only in the order 3, 2: the list's order is part of it
    assert orderable(line, shown[:1], np.array([[3, 2]]))[0] > 0 >= orderable(line, shown[:1], np.array([[2, 3]]))[0]
    # in the plane three unit directions can be put first in any order of two, with the third below them
    angles = np.deg2rad([0, 0, 120, 240])
    plane = np.stack([np.cos(angles), np.sin(angles)], 1)
    plane[0] = 0.0
    assert (orderable(plane, np.ones((2, 4), dtype=bool), np.array([[1, 2], [3, 1]])) > 0).all()
    # an item the user may not be shown does not have to be below the list
    hidden = shown[:1].copy()
    hidden[0, 2] = False
    assert orderable(line, hidden, np.array([[3, 1]]))[0] > 0


def test_list_mle_is_the_plackett_luce_likelihood_and_falls_as_the_scores_follow_the_order():
    scores = torch.tensor([[0.5, 2.0, -1.0, 0.0]])
    order = torch.tensor([[1, 3]])
    first = torch.logsumexp(scores[0], 0) - scores[0, 1]
    second = torch.logsumexp(scores[0, [0, 2, 3]], 0) - scores[0, 3]
    assert torch.allclose(list_mle(scores, order), first + second)  # summed over the list, averaged over rows
    assert torch.allclose(list_mle(scores.repeat(3, 1), order.repeat(3, 1)), first + second)
    scores.requires_grad_(True)
    list_mle(scores, order).sum().backward()
    assert scores.grad[0, 1] < 0 and scores.grad[0, 3] < 0  # descending the loss raises the listed items
    assert scores.grad[0, 0] > 0 and scores.grad[0, 2] > 0  # and lowers the rest

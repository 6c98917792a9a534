import pytest
import torch

from padirec.models import (
    BACKBONES,
    BackboneConfig,
    apply_adapters,
    apply_adapters_per_row,
    build_backbone,
    init_adapter_flat,
    unflatten,
)

# the user state's shape after the batch dimension: one vector, or K interests (ComiRec)
STATE_SHAPE = {"comirec": (4, 64)}


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_interface_shapes_and_padding_invariance(name):
    torch.manual_seed(0)
    model = build_backbone(BackboneConfig(name=name, n_items=30, max_len=6, dropout=0.0)).eval()
    histories = torch.tensor([[0, 0, 3, 4, 5, 6], [0, 0, 0, 0, 0, 9]])
    times = torch.tensor([[0, 0, 10, 20, 40, 41], [0, 0, 0, 0, 0, 5]], dtype=torch.float64)
    state = model.encode(histories, times)
    assert state.shape == (2, *STATE_SHAPE.get(name, (64,)))
    assert model.score(state).shape == (2, 31)
    candidates = torch.tensor([[1, 2, 3], [4, 5, 6]])
    scores = model.score(state, candidates)
    assert torch.allclose(scores, model.score(state).gather(1, candidates), atol=1e-5)
    # shorter window, same real items: same state (the padding is invisible)
    assert torch.allclose(model.encode(histories[:, 2:], times[:, 2:]), state, atol=1e-5)
    # the most recent item matters
    changed = histories.clone()
    changed[0, -1] = 7
    assert not torch.allclose(model.encode(changed, times)[0], state[0])
    # the adapter steers every backbone the same way: packed (K adapters) or one per row, then score
    flat = init_adapter_flat(0).repeat(3, 1)
    flat[:, -64:] = torch.randn(3, 64)  # up.bias: a visible change
    packed = apply_adapters(state, unflatten(flat))
    assert packed.shape == (3, *state.shape)
    torch.testing.assert_close(apply_adapters_per_row(state, unflatten(flat[:2])), packed[[0, 1], [0, 1]])
    assert model.score(packed).shape == (3, 2, 31) and not torch.allclose(model.score(packed[0]), model.score(state))


def test_parameter_structures_follow_paper_tables():
    n = 100
    sas = dict(build_backbone(BackboneConfig(name="sasrec", n_items=n)).named_parameters())
    assert sas["p_embeddings.weight"].shape == (21, 64) and sas["i_embeddings.weight"].shape == (n + 1, 64)
    gru = dict(build_backbone(BackboneConfig(name="gru4rec", n_items=n)).named_parameters())
    assert gru["rnn.weight_ih_l0"].shape == (192, 64) and gru["out.weight"].shape == (64, 64)
    ti = dict(build_backbone(BackboneConfig(name="tisasrec", n_items=n)).named_parameters())
    assert ti["t_k_embeddings.weight"].shape == (513, 64) and ti["p_v_embeddings.weight"].shape == (21, 64)


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone(BackboneConfig(name="bert4rec", n_items=5))


def test_comirec_scores_with_the_best_interest_and_trains_with_the_positives():
    torch.manual_seed(0)
    model = build_backbone(BackboneConfig(name="comirec", n_items=30, max_len=6, dropout=0.0))
    params = dict(model.named_parameters())
    assert params["attention.0.weight"].shape == (256, 64) and params["attention.2.weight"].shape == (4, 256)
    state = torch.randn(5, 4, 64)
    candidates = torch.randint(1, 31, (5, 7))
    per_interest = torch.einsum("bkd,bcd->bkc", state, model.i_embeddings(candidates))
    model.eval()
    torch.testing.assert_close(model.score(state, candidates), per_interest.amax(1))
    model.train()  # the interest that scores the positive (column 0) best scores every candidate
    best = per_interest[:, :, 0].argmax(1)
    torch.testing.assert_close(model.score(state, candidates), per_interest[torch.arange(5), best])
    assert not torch.allclose(model.score(state, candidates), per_interest.amax(1))
    # the K interests differ: each pools the history with its own attention
    interests = model.eval().encode(torch.tensor([[0, 1, 2, 3, 4, 5]]))
    assert torch.cdist(interests[0], interests[0]).triu(1).sum() > 0


def test_multi_interest_backbone_runs_through_pretraining_adapters_and_ranking(tmp_path):
    from padirec.data import SyntheticConfig, make_synthetic, preprocess
    from padirec.evaluation.ranking import EvalSet, rank_metrics
    from padirec.models import load_backbone, save_backbone
    from padirec.training import AdapterConfig, PretrainConfig, pretrain_backbone, train_adapters

    data = preprocess(make_synthetic(SyntheticConfig(n_users=60, n_items=40, seed=0)))
    backbone, summary = pretrain_backbone(data, PretrainConfig(backbone="comirec", epochs=2, dropout=0.0),
                                          progress=False)
    assert summary["best_val_ndcg10"] > 0 and not backbone.training
    weights = [[1.0, 0.0], [0.0, 1.0]]
    result = train_adapters(backbone, data, weights, AdapterConfig(epochs=2, keep_last=1, diversity_topk=3),
                            progress=False, eval_splits=("valid",))
    assert result.params.shape == (1, 2, 1096) and all(torch.isfinite(torch.as_tensor(v)).all()
                                                       for v in result.metrics.values())
    save_backbone(backbone, tmp_path / "comirec.pt")
    loaded, _ = load_backbone(tmp_path / "comirec.pt")
    test = EvalSet.build(data, "test")
    adapters = torch.as_tensor(result.params[-1])
    for name, values in rank_metrics(loaded, test, adapters).items():
        assert values.tolist() == rank_metrics(backbone, test, adapters)[name].tolist()

import pytest
import torch

from padirec.models import BACKBONES, BackboneConfig, build_backbone


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_interface_shapes_and_padding_invariance(name):
    torch.manual_seed(0)
    model = build_backbone(BackboneConfig(name=name, n_items=30, max_len=6, dropout=0.0)).eval()
    histories = torch.tensor([[0, 0, 3, 4, 5, 6], [0, 0, 0, 0, 0, 9]])
    times = torch.tensor([[0, 0, 10, 20, 40, 41], [0, 0, 0, 0, 0, 5]], dtype=torch.float64)
    state = model.encode(histories, times)
    assert state.shape == (2, 64)
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

import numpy as np
import pytest
import torch

from padirec.models import (
    ADAPTER_LAYOUT,
    N_PARAMS,
    N_TOKENS,
    Adapter,
    apply_adapter,
    apply_adapters,
    apply_adapters_per_row,
    from_matrix,
    from_tokens,
    init_adapter_flat,
    to_matrix,
    to_tokens,
    unflatten,
)


def test_adapter_has_1096_parameters_as_137_tokens_of_8():
    adapter = Adapter()
    assert sum(p.numel() for p in adapter.parameters()) == 1096 == N_PARAMS
    assert N_TOKENS == 137
    assert [(s.name, s.shape, s.offset) for s in ADAPTER_LAYOUT] == [
        ("down.weight", (8, 64), 0), ("down.bias", (8,), 512), ("up.weight", (64, 8), 520), ("up.bias", (64,), 1032)]


def test_each_token_holds_consecutive_values_of_one_tensor():
    flat = torch.arange(N_PARAMS, dtype=torch.float32)
    tokens = to_tokens(flat)
    assert tokens.shape == (137, 8)
    owners = []
    for token in tokens:
        names = {s.name for s in ADAPTER_LAYOUT for v in token.tolist() if s.offset <= v < s.offset + s.size}
        assert len(names) == 1 and torch.equal(token, token[0] + torch.arange(8.0))
        owners.append(names.pop())
    assert [owners.count(n) for n in ("down.weight", "down.bias", "up.weight", "up.bias")] == [64, 1, 64, 8]
    matrix = to_matrix(flat)
    assert matrix.shape == (8, 137) and torch.equal(matrix[:, 3], tokens[3])
    assert torch.equal(from_matrix(matrix), flat) and torch.equal(from_tokens(tokens), flat)


def test_flatten_load_flat_round_trip():
    torch.manual_seed(0)
    a, b = Adapter(), Adapter()
    flat = a.flatten()
    assert flat.dtype == torch.float32 and flat.shape == (1096,)
    b.load_flat(flat.numpy())
    h = torch.randn(5, 64)
    assert torch.allclose(a(h), b(h))
    assert torch.equal(b.flatten(), flat)
    assert torch.allclose(apply_adapter(h, unflatten(flat)), a(h))


def test_load_flat_rejects_bad_vectors():
    with pytest.raises(ValueError, match="shape"):
        Adapter().load_flat(torch.zeros(1095))
    bad = torch.zeros(1096)
    bad[7] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        Adapter().load_flat(bad)


def test_batched_k_adapter_forward_equals_k_single_forwards():
    torch.manual_seed(1)
    flats = torch.randn(6, N_PARAMS) * 0.1
    h = torch.randn(11, 64)
    batched = apply_adapters(h, unflatten(flats))
    assert batched.shape == (6, 11, 64)
    for k in range(6):
        single = Adapter().load_flat(flats[k])(h)
        assert torch.allclose(batched[k], single, atol=1e-5)
    per_row = apply_adapters_per_row(h[:6], unflatten(flats))
    for k in range(6):
        assert torch.allclose(per_row[k], Adapter().load_flat(flats[k])(h[k : k + 1])[0], atol=1e-5)


def test_initial_adapter_is_identity_and_fixed_by_its_seed():
    a, b, c = init_adapter_flat(3), init_adapter_flat(3), init_adapter_flat(4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    h = torch.randn(4, 64)
    assert torch.equal(apply_adapter(h, unflatten(a)), h)
    assert np.abs(a[:520].numpy()).max() > 0

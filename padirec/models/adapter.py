"""The residual bottleneck adapter that PaDiRec tunes per preference weight and generates.

`h' = h + W2 · ReLU(W1 · h + b1) + b2` on the backbone's last hidden state (paper §3.2).
With hidden size 64 and bottleneck 8 it has 512 + 8 + 512 + 64 = 1096 parameters. The
generator sees them as 137 tokens of width 8: `flat.view(137, 8)` of the tensors
concatenated in `ADAPTER_LAYOUT` order, so every token holds 8 consecutive values of a single
tensor (64 + 1 + 64 + 8 tokens). The `[8, 137]` matrix view is that token grid transposed
(one column per token), never a strided re-interleaving as in the authors' code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HIDDEN_SIZE = 64
BOTTLENECK = 8
TOKEN_WIDTH = 8


@dataclass(frozen=True)
class TensorSlot:
    """Where one adapter tensor lives in the flat parameter vector."""

    name: str
    shape: tuple[int, ...]
    offset: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


def adapter_layout(hidden: int = HIDDEN_SIZE, bottleneck: int = BOTTLENECK) -> list[TensorSlot]:
    """Tensor names, shapes and offsets of the flat adapter vector, in a fixed order."""
    shapes = [
        ("down.weight", (bottleneck, hidden)),
        ("down.bias", (bottleneck,)),
        ("up.weight", (hidden, bottleneck)),
        ("up.bias", (hidden,)),
    ]
    slots, offset = [], 0
    for name, shape in shapes:
        slots.append(TensorSlot(name, shape, offset))
        offset += int(np.prod(shape))
    return slots


ADAPTER_LAYOUT = adapter_layout()
N_PARAMS = sum(s.size for s in ADAPTER_LAYOUT)  # 1096
N_TOKENS = N_PARAMS // TOKEN_WIDTH  # 137


def layout_dict(layout: list[TensorSlot] = ADAPTER_LAYOUT) -> list[dict]:
    """JSON-serialisable layout, stored beside datasets and returned by the API."""
    return [{"name": s.name, "shape": list(s.shape), "offset": s.offset} for s in layout]


def unflatten(flat: torch.Tensor, layout: list[TensorSlot] = ADAPTER_LAYOUT) -> dict[str, torch.Tensor]:
    """Split `[..., n_params]` into named tensors `[..., *shape]` (views, batch dims kept)."""
    batch = flat.shape[:-1]
    return {s.name: flat[..., s.offset : s.offset + s.size].reshape(*batch, *s.shape) for s in layout}


def flatten_tensors(tensors: dict[str, torch.Tensor], layout: list[TensorSlot] = ADAPTER_LAYOUT) -> torch.Tensor:
    """Inverse of `unflatten`: concatenate named tensors `[..., *shape]` into `[..., n_params]`."""
    parts = []
    for s in layout:
        t = tensors[s.name]
        parts.append(t.reshape(*t.shape[: t.dim() - len(s.shape)], s.size))
    return torch.cat(parts, dim=-1)


def to_tokens(flat: torch.Tensor) -> torch.Tensor:
    """`[..., 1096]` → `[..., 137, 8]`: each token is 8 consecutive values of one tensor."""
    return flat.reshape(*flat.shape[:-1], -1, TOKEN_WIDTH)


def from_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """`[..., 137, 8]` → `[..., 1096]`."""
    return tokens.reshape(*tokens.shape[:-2], -1)


def to_matrix(flat: torch.Tensor) -> torch.Tensor:
    """The paper's `[8, 137]` matrix view: one column per token."""
    return to_tokens(flat).transpose(-1, -2)


def from_matrix(matrix: torch.Tensor) -> torch.Tensor:
    """Inverse of `to_matrix`."""
    return from_tokens(matrix.transpose(-1, -2))


def apply_adapter(h: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Functional residual bottleneck for one adapter: `h [..., d]`."""
    z = F.relu(F.linear(h, params["down.weight"], params["down.bias"]))
    return h + F.linear(z, params["up.weight"], params["up.bias"])


def apply_adapters(h: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """K adapters on one backbone output: `h [B, ..., d]`, params with leading K → `[K, B, ..., d]`.

    This is what makes packed sweeps cheap: the backbone runs once, the K heads are two
    batched matmuls. The `...` holds a multi-interest backbone's interests.
    """
    bias_shape = (params["down.bias"].shape[0],) + (1,) * (h.dim() - 1) + (-1,)
    z = F.relu(torch.einsum("...d,khd->k...h", h, params["down.weight"]) + params["down.bias"].view(bias_shape))
    up = torch.einsum("k...h,kdh->k...d", z, params["up.weight"])
    return h.unsqueeze(0) + up + params["up.bias"].view(bias_shape)


def apply_adapters_per_row(h: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """One adapter per row: `h [B, ..., d]`, params with leading B → `[B, ..., d]` (batched generation)."""
    bias_shape = (h.shape[0],) + (1,) * (h.dim() - 2) + (-1,)
    z = F.relu(torch.einsum("b...d,bhd->b...h", h, params["down.weight"]) + params["down.bias"].view(bias_shape))
    return h + torch.einsum("b...h,bdh->b...d", z, params["up.weight"]) + params["up.bias"].view(bias_shape)


class Adapter(nn.Module):
    """The adapter as a module, with its flat 1096-vector form for the generator."""

    def __init__(self, hidden: int = HIDDEN_SIZE, bottleneck: int = BOTTLENECK):
        super().__init__()
        self.down = nn.Linear(hidden, bottleneck)
        self.up = nn.Linear(bottleneck, hidden)
        self.layout = adapter_layout(hidden, bottleneck)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(F.relu(self.down(h)))

    def flatten(self) -> torch.Tensor:
        """Parameters as one float32 vector in layout order (a detached copy)."""
        return flatten_tensors(dict(self.named_parameters()), self.layout).detach().float().clone()

    @torch.no_grad()
    def load_flat(self, flat: torch.Tensor | np.ndarray) -> Adapter:
        flat = torch.as_tensor(np.asarray(flat, dtype=np.float32) if isinstance(flat, np.ndarray) else flat)
        n = sum(s.size for s in self.layout)
        if flat.shape != (n,):
            raise ValueError(f"adapter vector must have shape ({n},), got {tuple(flat.shape)}")
        if not torch.isfinite(flat).all():
            raise ValueError("adapter vector contains NaN or inf")
        for name, value in unflatten(flat, self.layout).items():
            self.get_parameter(name).copy_(value)
        return self


def init_adapter_flat(seed: int, hidden: int = HIDDEN_SIZE, bottleneck: int = BOTTLENECK) -> torch.Tensor:
    """The one shared initial adapter of a sweep (one init seed, see DESIGN §2.3).

    `down` gets PyTorch's default init from `seed`; `up` starts at zero, so every adapter
    starts as the identity and the tuned adapter is a departure from the frozen backbone.
    """
    generator = torch.Generator().manual_seed(seed)
    bound = 1.0 / hidden**0.5
    tensors = {
        "down.weight": (torch.rand(bottleneck, hidden, generator=generator) * 2 - 1) * bound,
        "down.bias": (torch.rand(bottleneck, generator=generator) * 2 - 1) * bound,
        "up.weight": torch.zeros(hidden, bottleneck),
        "up.bias": torch.zeros(hidden),
    }
    return flatten_tensors(tensors, adapter_layout(hidden, bottleneck))

"""Per-tensor normalisation of flat adapters: what the generator diffuses, stored beside the gathered dataset.

It lives beside the adapter layout because the sweep's gather writes it and the generator reads it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from padirec.models.adapter import ADAPTER_LAYOUT, TensorSlot, layout_dict


class ParamNormalizer:
    """Per-tensor mean/std normalisation of flat adapters (W1, b1, W2, b2), stored beside the dataset."""

    def __init__(
        self, mean: Tensor, std: Tensor, lo: Tensor, hi: Tensor, layout: list[TensorSlot] = ADAPTER_LAYOUT
    ):
        self.layout = layout
        self.mean, self.std, self.lo, self.hi = (torch.as_tensor(v).float() for v in (mean, std, lo, hi))
        if not all(v.shape == (len(layout),) for v in (self.mean, self.std, self.lo, self.hi)):
            raise ValueError(f"mean/std/lo/hi must each have one value per tensor ({len(layout)})")
        # which tensor each flat position belongs to
        self.index = torch.cat([torch.full((s.size,), i) for i, s in enumerate(layout)])

    @classmethod
    def fit(
        cls, flat: Tensor, layout: list[TensorSlot] = ADAPTER_LAYOUT, eps: float = 1e-8
    ) -> ParamNormalizer:
        """Statistics of `flat [N, n_params]`; a constant tensor (std ~ 0) gets std 1, so is only centred."""
        flat = flat.detach().double().cpu()
        parts = [flat[:, s.offset : s.offset + s.size] for s in layout]
        mean = torch.stack([p.mean() for p in parts])
        std = torch.stack([p.std(unbiased=False) for p in parts])
        std = torch.where(std < eps, torch.ones_like(std), std)
        normed = [(p - m) / s for p, m, s in zip(parts, mean, std, strict=True)]
        lo, hi = torch.stack([p.min() for p in normed]), torch.stack([p.max() for p in normed])
        return cls(mean, std, lo, hi, layout)

    def to(self, device: torch.device | str) -> ParamNormalizer:
        """Move the statistics in place (so sampling does no host-device copies per step); returns self."""
        for name in ("mean", "std", "lo", "hi", "index"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def _per_value(self, v: Tensor, like: Tensor) -> Tensor:
        return v.to(like.device)[self.index.to(like.device)].to(like.dtype)

    def normalize(self, flat: Tensor) -> Tensor:
        return (flat - self._per_value(self.mean, flat)) / self._per_value(self.std, flat)

    def denormalize(self, flat: Tensor) -> Tensor:
        return flat * self._per_value(self.std, flat) + self._per_value(self.mean, flat)

    def clamp_tokens(self, x0_tokens: Tensor) -> Tensor:
        """Clamp each normalised value of `[..., n_tokens, width]` to the range its tensor had in training."""
        flat = x0_tokens.reshape(*x0_tokens.shape[:-2], -1)
        flat = torch.clamp(flat, self._per_value(self.lo, flat), self._per_value(self.hi, flat))
        return flat.reshape(x0_tokens.shape)

    def to_dict(self) -> dict:
        stats = {k: getattr(self, k).tolist() for k in ("mean", "std", "lo", "hi")}
        return {"layout": layout_dict(self.layout), **stats}

    @classmethod
    def from_dict(cls, d: dict) -> ParamNormalizer:
        layout = [TensorSlot(s["name"], tuple(s["shape"]), s["offset"]) for s in d["layout"]]
        return cls(*(torch.tensor(d[k]) for k in ("mean", "std", "lo", "hi")), layout=layout)

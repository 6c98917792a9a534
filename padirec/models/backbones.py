"""Sequential backbones (SASRec, GRU4Rec, TiSASRec, ComiRec-SA) behind one interface.

Every backbone maps a left-padded history `[B, L]` (most recent item last) to a user state
`[B, 64]` with `encode`, and scores items by a dot product with the item embeddings in
`score`. The adapter sits between the two, so a frozen backbone can be steered by the adapter
alone. Parameter structures follow paper Tables 4–6. The multi-interest ComiRec's state is
`[B, K, 64]` (K interests); the adapter acts on each interest and `score` reduces over them.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

BACKBONES = ("sasrec", "gru4rec", "tisasrec", "comirec")


@dataclass
class BackboneConfig:
    name: str = "sasrec"  # sasrec | gru4rec | tisasrec | comirec
    n_items: int = 0  # items are 1..n_items, 0 is padding
    hidden: int = 64
    max_len: int = 20
    dropout: float = 0.1
    time_span: int = 512  # TiSASRec: largest personalised time interval
    n_interests: int = 4  # ComiRec: K interests (DimeRec, ComiRec: 4)

    def to_dict(self) -> dict:
        return asdict(self)


class Backbone(nn.Module):
    """Shared parts: item embeddings and the scoring rule."""

    def __init__(self, config: BackboneConfig):
        super().__init__()
        if config.n_items <= 0:
            raise ValueError("BackboneConfig.n_items must be positive")
        self.config = config
        self.i_embeddings = nn.Embedding(config.n_items + 1, config.hidden, padding_idx=0)
        nn.init.normal_(self.i_embeddings.weight, std=0.02)
        with torch.no_grad():
            self.i_embeddings.weight[0].zero_()

    def encode(self, histories: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def score(self, state: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """`state [..., d]` against `items [..., C]` → `[..., C]`; all items `[..., n_items+1]` if None."""
        if items is None:
            return state @ self.i_embeddings.weight.T
        return torch.einsum("...d,...cd->...c", state, self.i_embeddings(items))


def reverse_positions(valid: torch.Tensor) -> torch.Tensor:
    """Positions counted from the end of a left-padded history: most recent 1, padding 0."""
    L = valid.shape[1]
    return (L - torch.arange(L, device=valid.device))[None, :] * valid


class SASRec(Backbone):
    """Self-attentive sequential recommendation: one causal single-head block (Table 4)."""

    def __init__(self, config: BackboneConfig):
        super().__init__(config)
        d = config.hidden
        self.p_embeddings = nn.Embedding(config.max_len + 1, d)  # position counted from the end, 0 = padding
        self.q_linear, self.k_linear, self.v_linear = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.layer_norm1, self.layer_norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.linear1, self.linear2 = nn.Linear(d, d), nn.Linear(d, d)
        self.dropout = nn.Dropout(config.dropout)

    def attend(self, x: torch.Tensor, valid: torch.Tensor,
               k_extra: torch.Tensor | None = None, v_extra: torch.Tensor | None = None) -> torch.Tensor:
        """One transformer block; TiSASRec passes per-pair key/value terms."""
        q, k, v = self.q_linear(x), self.k_linear(x), self.v_linear(x)
        logits = q @ k.transpose(1, 2)
        if k_extra is not None:
            logits = logits + torch.einsum("bid,bijd->bij", q, k_extra)
        logits = logits / x.shape[-1] ** 0.5
        L = x.shape[1]
        causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
        mask = causal & valid[:, None, :]
        logits = logits.masked_fill(~mask, float("-inf"))
        attn = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # fully padded rows
        out = attn @ v
        if v_extra is not None:
            out = out + torch.einsum("bij,bijd->bid", attn, v_extra)
        x = self.layer_norm1(x + self.dropout(out))
        x = self.layer_norm2(x + self.dropout(self.linear2(F.relu(self.linear1(x)))))
        return x * valid[..., None]

    def embed(self, histories: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = histories > 0
        x = self.i_embeddings(histories) + self.p_embeddings(reverse_positions(valid))
        return self.dropout(x) * valid[..., None], valid

    def encode(self, histories: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        x, valid = self.embed(histories)
        return self.attend(x, valid)[:, -1]


class TiSASRec(SASRec):
    """SASRec with personalised time-interval embeddings on keys and values (Table 6)."""

    def __init__(self, config: BackboneConfig):
        super().__init__(config)
        d = config.hidden
        del self.p_embeddings
        self.p_k_embeddings = nn.Embedding(config.max_len + 1, d)
        self.p_v_embeddings = nn.Embedding(config.max_len + 1, d)
        self.t_k_embeddings = nn.Embedding(config.time_span + 1, d)
        self.t_v_embeddings = nn.Embedding(config.time_span + 1, d)

    def intervals(self, times: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """|t_i − t_j| in units of the user's smallest positive gap, clipped to time_span."""
        t = times.double()
        diff = (t[:, :, None] - t[:, None, :]).abs()
        pair_valid = valid[:, :, None] & valid[:, None, :]
        positive = diff.masked_fill(~pair_valid | (diff <= 0), float("inf"))
        unit = positive.flatten(1).min(dim=1).values.clamp(max=1e30)
        unit = torch.where(torch.isinf(unit) | (unit <= 0), torch.ones_like(unit), unit)
        scaled = (diff / unit[:, None, None]).floor().clamp(max=self.config.time_span)
        return (scaled * pair_valid).long()

    def encode(self, histories: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        if times is None:
            raise ValueError("TiSASRec needs the history timestamps")
        valid = histories > 0
        positions = reverse_positions(valid)
        x = self.dropout(self.i_embeddings(histories)) * valid[..., None]
        gaps = self.intervals(times, valid)
        pos_k, pos_v = self.p_k_embeddings(positions), self.p_v_embeddings(positions)
        k_extra = self.dropout(self.t_k_embeddings(gaps)) + pos_k[:, None, :, :]
        v_extra = self.dropout(self.t_v_embeddings(gaps)) + pos_v[:, None, :, :]
        return self.attend(x, valid, k_extra, v_extra)[:, -1]


class GRU4Rec(Backbone):
    """GRU over the history; the last hidden state through a linear layer (Table 5)."""

    def __init__(self, config: BackboneConfig):
        super().__init__(config)
        d = config.hidden
        self.rnn = nn.GRU(d, d, batch_first=True)
        self.out = nn.Linear(d, d)
        self.dropout = nn.Dropout(config.dropout)

    def encode(self, histories: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        lengths = (histories > 0).sum(1).clamp(min=1)
        # right-align → left-align so that packing sees each real sequence from its start
        L = histories.shape[1]
        index = (torch.arange(L, device=histories.device)[None, :] + (L - lengths)[:, None]) % L
        aligned = torch.gather(histories, 1, index)
        x = self.dropout(self.i_embeddings(aligned))
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = self.rnn(packed)
        return self.out(hidden[-1])


class ComiRec(Backbone):
    """ComiRec-SA (Cen et al. 2020; DimeRec's guidance extractor): K interests as self-attentive poolings of the
    history, `A = softmax_L(W2 tanh(W1 (H + P)))`, `interests = Aᵀ H`. An item scores with its best interest;
    in training mode, with candidates whose column 0 is the positive, the interest that scores the positive
    best scores all candidates (ComiRec's training rule)."""

    def __init__(self, config: BackboneConfig):
        super().__init__(config)
        d = config.hidden
        self.p_embeddings = nn.Embedding(config.max_len + 1, d)  # position counted from the end, 0 = padding
        self.attention = nn.Sequential(nn.Linear(d, 4 * d), nn.Tanh(), nn.Linear(4 * d, config.n_interests))
        self.dropout = nn.Dropout(config.dropout)

    def encode(self, histories: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """`[B, L]` -> interests `[B, K, d]`; padding gets no attention."""
        valid = histories > 0
        items = self.dropout(self.i_embeddings(histories))
        logits = self.attention(items + self.p_embeddings(reverse_positions(valid)))  # [B, L, K]
        weights = torch.softmax(logits.masked_fill(~valid[..., None], float("-inf")), dim=1).nan_to_num(0.0)
        return torch.einsum("blk,bld->bkd", weights, items)

    def score(self, state: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """`state [..., K, d]` against `items [..., C]` → `[..., C]` (all items `[..., n_items+1]` if None)."""
        if items is None:
            return (state @ self.i_embeddings.weight.T).amax(-2)
        per_interest = torch.einsum("...kd,...cd->...kc", state, self.i_embeddings(items))
        if not self.training:
            return per_interest.amax(-2)
        best = per_interest[..., 0].argmax(-1)[..., None, None]  # the positive's interest
        return per_interest.gather(-2, best.expand(*best.shape[:-1], per_interest.shape[-1])).squeeze(-2)


def build_backbone(config: BackboneConfig) -> Backbone:
    """The backbone named by `config.name`."""
    classes = {"sasrec": SASRec, "gru4rec": GRU4Rec, "tisasrec": TiSASRec, "comirec": ComiRec}
    if config.name not in classes:
        raise ValueError(f"unknown backbone {config.name!r}; choose one of {', '.join(BACKBONES)}")
    return classes[config.name](config)


def save_backbone(backbone: Backbone, path: str | os.PathLike, extra: dict | None = None) -> None:
    """A checkpoint of config + weights (+ where its data came from), loadable with weights_only."""
    torch.save({"config": backbone.config.to_dict(), "state_dict": backbone.state_dict(),
                "extra": extra or {}}, path)


def load_backbone(path: str | os.PathLike, device: str = "cpu") -> tuple[Backbone, dict]:
    """Frozen backbone from `save_backbone`, plus its extra metadata."""
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    backbone = build_backbone(BackboneConfig(**checkpoint["config"]))
    backbone.load_state_dict(checkpoint["state_dict"])
    backbone.eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    return backbone, checkpoint.get("extra", {})


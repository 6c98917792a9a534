"""DiT denoiser over the adapter's tokens (paper §3.3, appendix A.5 and Table 8).

The 1096 adapter parameters arrive as 137 tokens of width 8 (`padirec.models.adapter.to_tokens`).
The step t and the preference weights w are embedded and summed into one condition vector c,
which enters in one of three ways (paper Fig. 5): `pre` adds c to every token before the blocks,
`pre_post` also after each attention sub-block, `adanorm` modulates every LayerNorm with
shift/scale/gate from c (adaLN-Zero, Peebles & Xie 2023). `mcgln` (FatsMB's multi-condition guided
LayerNorm) is adanorm with a mixture of experts as the FFN: shared experts for every row plus the private
experts of the row's w-region, mixed per token by a softmax gate; rows with the null condition use the shared
experts only. With `reference` (FatsMB's "agnostic -> specific"), a preference-agnostic reference adapter
(the sweep's mean adapter, a buffer saved with the weights) is added to every attention input and is never
dropped. Classifier-free guidance replaces w's embedding with a learned null embedding on the rows where
`drop` is True.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from padirec.models.adapter import N_TOKENS, TOKEN_WIDTH

CONDITIONINGS = ("pre", "pre_post", "adanorm", "mcgln")


@dataclass
class DiTConfig:
    n_tokens: int = N_TOKENS
    token_dim: int = TOKEN_WIDTH
    cond_dim: int = 2
    hidden: int = 512
    depth: int = 4
    heads: int = 8
    ffn: int = 2048
    dropout: float = 0.0
    conditioning: Literal["adanorm", "pre", "pre_post", "mcgln"] = "adanorm"  # how w enters (paper A.5)
    freq_dim: int = 256  # sinusoidal features of the step
    cond_freq_dim: int = 64  # sinusoidal features per coordinate of w
    cond_scale: float = 1000.0  # w in [0, 1] is stretched to a step-like range before its embedding
    regions: int = 3  # mcgln: equal bins of w_0 (w_acc) that route the private experts
    shared_experts: int = 1  # mcgln: experts every row uses (the null condition uses only these)
    private_experts: int = 2  # mcgln: experts per region
    reference: bool = False  # mcgln: condition every block on the reference adapter (agnostic -> specific)


def sinusoidal_embedding(x: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """`x [...]` -> `[..., dim]` cos/sin features at geometric frequencies (the ADM/DiT step embedding)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=x.device) / half)
    args = x.float()[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


def mlp(d_in: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden))


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, N, C))


def feed_forward(hidden: int, inner: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(hidden, inner), nn.GELU(approximate="tanh"), nn.Dropout(dropout), nn.Linear(inner, hidden)
    )


class Block(nn.Module):
    """Pre-LN transformer block; under `adanorm` its norms are modulated by c (adaLN-Zero)."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        h, self.mode = config.hidden, config.conditioning
        affine = self.mode != "adanorm"
        self.norm1 = nn.LayerNorm(h, elementwise_affine=affine, eps=1e-6)
        self.attn = Attention(h, config.heads, config.dropout)
        self.norm2 = nn.LayerNorm(h, elementwise_affine=affine, eps=1e-6)
        self.mlp = feed_forward(h, config.ffn, config.dropout)
        self.ada = None if affine else nn.Sequential(nn.SiLU(), nn.Linear(h, 6 * h))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        if self.ada is None:
            x = x + self.attn(self.norm1(x))
            if self.mode == "pre_post":
                x = x + c[:, None]
            return x + self.mlp(self.norm2(x))
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class MixtureOfExperts(nn.Module):
    """CGC mixture (FatsMB eq. 18-20): shared experts plus the private experts of the row's region, mixed per
    token by softmax(W_g x); region -1 (the null condition) masks the private experts out."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        h, n_shared, n_private = config.hidden, config.shared_experts, config.private_experts
        inner = max(1, config.ffn // (n_shared + n_private))  # per-token compute of the dense FFN
        self.shared = nn.ModuleList(feed_forward(h, inner, config.dropout) for _ in range(n_shared))
        self.private = nn.ModuleList(
            nn.ModuleList(feed_forward(h, inner, config.dropout) for _ in range(n_private))
            for _ in range(config.regions)
        )
        self.gate = nn.Linear(h, n_shared + n_private)

    def forward(self, x: Tensor, region: Tensor) -> Tensor:
        """x [B, N, h], region int64 [B] in -1..regions-1 -> [B, N, h]."""
        n_shared = len(self.shared)
        logits = self.gate(x)
        null = (region < 0)[:, None, None] & (torch.arange(logits.shape[-1], device=x.device) >= n_shared)
        gate = torch.softmax(logits.masked_fill(null, float("-inf")), dim=-1)
        out = sum(gate[..., i, None] * expert(x) for i, expert in enumerate(self.shared))
        private = torch.zeros_like(x)
        for r, experts in enumerate(self.private):  # every expert runs (maybe on 0 rows): DDP sees all params used
            rows = region == r
            x_r, gate_r = x[rows], gate[rows]
            private[rows] = sum(gate_r[..., n_shared + i, None] * expert(x_r) for i, expert in enumerate(experts))
        return out + private


class MCGLNBlock(nn.Module):
    """FatsMB's MCGLN in adaLN-Zero form: condition-and-step modulated, gated attention (its input plus the
    reference adapter's embedding, if any) and a gated mixture of experts routed by the w-region."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        h = config.hidden
        self.norm1 = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(h, config.heads, config.dropout)
        self.norm2 = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.moe = MixtureOfExperts(config)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(h, 6 * h))

    def forward(self, x: Tensor, c: Tensor, region: Tensor, reference: Tensor | None = None) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)
        a = x if reference is None else x + reference
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(a), shift1, scale1))
        return x + gate2[:, None] * self.moe(modulate(self.norm2(x), shift2, scale2), region)


class DiT(nn.Module):
    """Denoiser over the adapter's 137 tokens of width 8."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        if config.conditioning not in CONDITIONINGS:
            raise ValueError(f"unknown conditioning {config.conditioning!r}; expected one of {CONDITIONINGS}")
        if config.hidden % config.heads:
            raise ValueError(f"hidden={config.hidden} is not a multiple of heads={config.heads}")
        if config.conditioning == "mcgln" and (config.shared_experts < 1 or config.regions < 1):
            raise ValueError("mcgln needs at least one shared expert (the null condition's) and one region")
        self.config = config
        h = config.hidden
        self.x_embed = nn.Linear(config.token_dim, h)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.n_tokens, h))
        self.t_embed = mlp(config.freq_dim, h)
        self.w_embed = mlp(config.cond_dim * config.cond_freq_dim, h)
        self.null = nn.Parameter(torch.zeros(h))  # the CFG null condition
        mcgln = config.conditioning == "mcgln"
        self.blocks = nn.ModuleList((MCGLNBlock if mcgln else Block)(config) for _ in range(config.depth))
        if config.reference and not mcgln:
            raise ValueError("the reference adapter is a condition of conditioning='mcgln'")
        self.ref_embed = nn.Linear(config.token_dim, h) if config.reference else None
        # normalised reference adapter tokens; set from the dataset by training, saved in the state dict
        self.register_buffer("reference", torch.zeros(config.n_tokens, config.token_dim) if config.reference else None)
        ada = config.conditioning in ("adanorm", "mcgln")
        self.final_norm = nn.LayerNorm(h, elementwise_affine=not ada, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(h, 2 * h)) if ada else None
        self.final = nn.Linear(h, config.token_dim)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's init: xavier linears, small embeddings; zeros make each block the identity, output 0."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        embeds = [m[i].weight for m in (self.t_embed, self.w_embed) for i in (0, 2)]
        for p in [self.pos_embed, self.null, *embeds]:
            nn.init.normal_(p, std=0.02)
        zero = [self.final] + [b.ada[-1] for b in self.blocks if b.ada is not None]
        zero += [self.final_ada[-1]] if self.final_ada is not None else []
        for m in zero:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def condition(self, t: Tensor, w: Tensor | None, drop: Tensor | None = None) -> Tensor:
        """c = emb(t) + emb(w); the learned null embedding replaces emb(w) where dropped (or w is None)."""
        cfg = self.config
        c_t = self.t_embed(sinusoidal_embedding(t, cfg.freq_dim))
        null = self.null.expand_as(c_t)
        if w is None:
            return c_t + null
        c_w = self.w_embed(sinusoidal_embedding(w * cfg.cond_scale, cfg.cond_freq_dim).flatten(1))
        if drop is not None:
            c_w = torch.where(drop[:, None], null, c_w)
        return c_t + c_w

    def region(self, w: Tensor | None, drop: Tensor | None, batch: int) -> Tensor:
        """mcgln's expert route: the bin of w_0 among `regions` equal bins of [0, 1]; -1 where w is dropped."""
        if w is None:
            return torch.full((batch,), -1, dtype=torch.long, device=self.null.device)
        region = (w[:, 0] * self.config.regions).long().clamp(0, self.config.regions - 1)
        return region if drop is None else torch.where(drop, -1, region)

    def forward(self, x: Tensor, t: Tensor, w: Tensor | None, drop: Tensor | None = None) -> Tensor:
        """x [B, n_tokens, token_dim], t int64 [B], w [B, cond_dim] or None, drop bool [B] -> like x."""
        c = self.condition(t, w, drop)
        x = self.x_embed(x) + self.pos_embed
        if self.final_ada is None:  # pre / pre_post
            x = x + c[:, None]
        if self.config.conditioning == "mcgln":
            region = self.region(w, drop, x.shape[0])
            reference = self.ref_embed(self.reference) if self.ref_embed is not None else None
            for block in self.blocks:
                x = block(x, c, region, reference)
        else:
            for block in self.blocks:
                x = block(x, c)
        x = self.final_norm(x)
        if self.final_ada is not None:
            x = modulate(x, *self.final_ada(c).chunk(2, dim=-1))
        return self.final(x)

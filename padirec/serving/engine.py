"""What the Serve deployments compute, as plain functions: the adapter cache, batched generation, batched
ranking. Tested without Ray; `serving.app` wraps them in deployments."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from padirec.diffusion.sampling import SamplerConfig
from padirec.models import N_PARAMS, apply_adapters_per_row, unflatten


class TorchThread:
    """The one thread a replica runs its torch work on, loading included. OpenMP's parallel regions ran 1.7x slower
    on a thread other than the one that first ran them (BENCHMARKS §14: best-of-N's sampling 51 -> 125 ms), and
    `asyncio.to_thread` may pick any thread of its pool; this keeps the event loop free all the same."""

    def __init__(self, threads: int = 1):
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="padirec-torch")
        self.call(torch.set_num_threads, max(1, threads))

    def call(self, fn, *args):
        """`fn(*args)` on the torch thread, waiting for it (a replica's __init__)."""
        return self.executor.submit(fn, *args).result()

    async def run(self, fn, *args):
        """`fn(*args)` on the torch thread, awaited."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)


class AdapterCache:
    """LRU cache of generated adapters keyed by w rounded to `precision` decimals."""

    def __init__(self, capacity: int = 1024, precision: int = 3):
        if capacity < 0 or precision < 0:
            raise ValueError("capacity and precision must be >= 0")
        self.capacity, self.precision = capacity, precision
        self._entries: OrderedDict[tuple[float, ...], np.ndarray] = OrderedDict()
        self.hits = self.misses = 0

    def key(self, w) -> tuple[float, ...]:
        """Normalised to sum 1, then rounded (`+ 0.0` turns -0.0 into 0.0)."""
        w = np.asarray(w, dtype=np.float64)
        return tuple(round(float(x), self.precision) + 0.0 for x in w / w.sum())

    def get(self, key: tuple[float, ...]) -> np.ndarray | None:
        value = self._entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: tuple[float, ...], value: np.ndarray) -> None:
        if self.capacity == 0:
            return
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict:
        total = self.hits + self.misses
        return {"size": len(self), "capacity": self.capacity, "precision": self.precision, "hits": self.hits,
                "misses": self.misses, "hit_rate": self.hits / total if total else 0.0}


@torch.no_grad()
def generate_adapters(generator, w: np.ndarray, sampler: SamplerConfig, seed: int = 0) -> np.ndarray:
    """Adapters `[B, 1096]` for `w [B, p]` in one sampler call, every row from the same seeded x_T
    (a w's adapter must not depend on which other requests share its batch); non-finite output is an error."""
    return _checked(generator.generate(np.ascontiguousarray(w, dtype=np.float32), sampler, seed, shared_noise=True),
                    len(w))


def select_adapters(best_of, w: np.ndarray) -> np.ndarray:
    """Best-of-N adapters `[B, 1096]` for `w [B, p]` (`evaluation.select.BestOf`), one w at a time: a w's N
    samples are then the ones `generate --select` draws for it alone, whatever else shares the batch."""
    w = np.ascontiguousarray(w, dtype=np.float32)
    return _checked(np.concatenate([best_of.adapters(row[None])[0] for row in w]), len(w))


def _checked(flat: np.ndarray, rows: int) -> np.ndarray:
    if flat.shape != (rows, N_PARAMS) or not np.isfinite(flat).all():
        raise RuntimeError("the generator produced non-finite adapter parameters")
    return flat


@torch.no_grad()
def recommend_batch(backbone, histories: list[list[int]], params: np.ndarray, ks: list[int],
                    times: list[list[float] | None] | None = None) -> list[dict]:
    """Top-k items per row: the last `max_len` history items (left-padded) through the frozen backbone, the
    row's adapter (`apply_adapters_per_row`) and a dot product with every item; history items excluded."""
    device = next(backbone.parameters()).device
    L, B = backbone.config.max_len, len(histories)
    sequences = torch.zeros((B, L), dtype=torch.long)
    stamps = torch.zeros((B, L), dtype=torch.float64)
    for i, history in enumerate(histories):
        recent = history[-L:]
        sequences[i, L - len(recent):] = torch.as_tensor(recent, dtype=torch.long)
        row_times = (times[i] if times else None) or range(len(history))  # evenly spaced if not given
        stamps[i, L - len(recent):] = torch.as_tensor(list(row_times)[-L:], dtype=torch.float64)
    state = backbone.encode(sequences.to(device), stamps.to(device))
    flat = torch.as_tensor(np.asarray(params, dtype=np.float32), device=device).reshape(B, N_PARAMS)
    scores = backbone.score(apply_adapters_per_row(state, unflatten(flat))).float()
    scores[:, 0] = -torch.inf  # padding
    for i, history in enumerate(histories):
        scores[i, torch.as_tensor(history, dtype=torch.long, device=device)] = -torch.inf
    top = scores.topk(min(max(ks), scores.shape[1]), dim=1)
    results = []
    for i, k in enumerate(ks):
        values, items = top.values[i, :k], top.indices[i, :k]
        keep = torch.isfinite(values)
        results.append({"items": items[keep].tolist(), "scores": values[keep].tolist()})
    return results

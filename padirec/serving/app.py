"""The Ray Serve application: preference weights -> generated adapter -> recommendations, over HTTP.

Three deployments:

- `GeneratorDeployment` holds the trained DiT (`load_generator` on a checkpoint resolved by
  `resolve_generator_file`: a `dit.pt` path, a training run id or `models:/padirec-dit@champion`). Requests are
  grouped by `@serve.batch` into one sampler call per batch. Every w is normalised to sum to 1 and rounded
  to `precision` decimals; the rounded w is both the key of a per-replica LRU cache and what the adapter is
  generated for, so all w in one rounding cell get the same adapter. The initial noise x_T is drawn from the
  fixed `seed` for each row on its own, so with the deterministic DDIM sampler (eta = 0, the default) an
  adapter depends only on w, never on which other requests shared its batch. Requests for a w that is
  being generated wait for that generation instead of starting another.
- `RecommenderDeployment` holds the frozen backbone (an explicit `backbone` path / run id, or the
  generator checkpoint's `backbone_run_id`, whose MLflow artifact `backbone/backbone.pt` is fetched) and
  ranks all items for (history, adapter) rows, batched, with `apply_adapters_per_row`; history items are
  never recommended. For a `user` it ranks the user's test split and scores the list (`catalogue.py`).
- `PaDiRecAPI` (`ingress.py`), the FastAPI ingress: the control page at `/`, `POST /v1/adapters`,
  `POST /v1/recommendations`, `GET /v1/model`, `GET /healthz`, and FastAPI's `/openapi.json` and `/docs`. Bad
  requests get a 4xx with a reason (`schemas.py`), never a 500; the body-size limit and the count of rejected
  requests are `http.py`'s. The ingress keeps the adapters it returned (its own LRU by rounded w, with the encoded
  answer), so a cache hit never reaches the generator.

The generator and the recommender serve their default model (`checkpoint`) and, with Ray Serve's model
multiplexing, the registered models of `models` (an allow-list: a request names one as NAME/VERSION or NAME@ALIAS,
never a path; `served.py`). An alias is resolved when a replica loads the model, not again while it keeps it.

`build_app(args)` is the Serve application builder:

    serve run padirec.serving.app:build_app checkpoint=models:/padirec-dit@champion
    serve deploy padirec/serving/serve_config.yaml

Cache statistics are per generator replica (`/healthz` reports the replica that answered).
"""

# no `from __future__ import annotations`: FastAPI reads the route signatures of the Serve ingress class, whose
# string annotations it cannot resolve (a body model would turn into a query parameter)
import asyncio
import logging
import os
import time
from dataclasses import fields
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from ray import serve
from ray.serve import Application, metrics

from padirec import tracking
from padirec.contracts.artifacts import resolve_generator_file
from padirec.contracts.checkpoint import load_checkpoint
from padirec.contracts.names import DEFAULT_MODEL_URI
from padirec.diffusion.sampling import DEFAULT_DDIM_STEPS, default_sampler, make_sampler
from padirec.serving.engine import TorchThread, generate_adapters, recommend_batch, select_adapters
from padirec.serving.http import DEFAULT_MAX_BODY_BYTES
from padirec.serving.ingress import PaDiRecAPI
from padirec.serving.schemas import DEFAULT_MAX_HISTORY
from padirec.serving.served import (
    GenerationSettings,
    ServedBackbone,
    ServedGenerator,
    load_served_backbone,
    load_served_generator,
    registered_model_id,
)

log = logging.getLogger(__name__)

APP_NAME = "padirec"
MAX_GUIDANCE = 10.0  # beyond a few units CFG only pushes adapters off the training range (BENCHMARKS §5)
MAX_MODELS_PER_REPLICA = 4  # models a replica keeps loaded beside its default (LRU; Serve fixes it per class)
SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]


class AppArgs(BaseModel):
    """Arguments of `build_app` (strings from `serve run ... key=value` are converted)."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str = Field(DEFAULT_MODEL_URI, description="dit.pt path, training run id, runs:/ or models:/ URI")
    backbone: str | None = Field(None, description="backbone.pt path or run id (default: the generator's)")
    cache_size: int = Field(1024, ge=0, description="adapters kept per generator replica (0: no cache)")
    precision: int = Field(3, ge=0, le=10, description="decimals w is rounded to (cache key and generation)")
    sampler: Literal["ddim", "ddpm", "dpm"] | None = Field(None, description="default: dpm (DPM-Solver++(2M)) "
                                                                            "with select, else ddim")
    steps: int | None = Field(None, ge=1, description="ddim or dpm steps (default: 10 with select, else 1 = one x0 "
                                                      "prediction from noise; ddpm always runs all T)")
    guidance: float = Field(0.0, ge=0.0, le=MAX_GUIDANCE, allow_inf_nan=False,
                            description=f"classifier-free guidance gamma in [0, {MAX_GUIDANCE}] (0: none)")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="ddim noise; > 0 makes an adapter batch-dependent")
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="bfloat16: the DiT runs under autocast "
                                                                       "(fast on CPUs with AMX)")
    seed: int = Field(0, description="seed of the initial noise, the same for every w")
    select: int = Field(0, ge=0, description="best-of-N: this many samples per w, scored on select_users validation "
                                             "users, the best w-utility kept (as generate --select; 0: off)")
    select_users: int = Field(256, ge=1, description="validation users best-of-N scores its samples on")
    num_replicas: int = Field(1, ge=1, description="replicas of the generator and of the recommender")
    num_cpus: float = Field(1.0, ge=0.0, description="CPUs per generator replica (also its torch threads)")
    num_gpus: float = Field(0.0, ge=0.0, description="GPUs per generator replica; fractions share a GPU")
    recommender_num_cpus: float = Field(0.5, ge=0.0)
    max_batch_size: int = Field(16, ge=1)
    batch_wait_timeout_s: float = Field(0.01, ge=0.0)
    max_ongoing_requests: int = Field(128, ge=1, description="per replica; raised to max_batch_size if lower")
    max_history: int = Field(DEFAULT_MAX_HISTORY, ge=1, description="longest accepted history")
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024,
                                description="larger request bodies get a 413 before they are read")
    tracking_uri: str | None = Field(None, description="MLflow store (default: MLFLOW_TRACKING_URI, ./mlflow.db)")
    models: list[str] = Field([], description="registered models a request may name besides the default "
                                              "(NAME/VERSION or NAME@ALIAS), served by Ray Serve's multiplexing")
    data_dir: str | None = Field(None, description="where the backbone's dataset is on this machine (default: the "
                                                   "path it was trained from); for the control page's users and titles")

    @field_validator("models")
    @classmethod
    def _registered(cls, models: list[str]) -> list[str]:
        return list(dict.fromkeys(registered_model_id(m) for m in models))  # never a path: see `served.py`

    @model_validator(mode="after")
    def _sampler(self) -> "AppArgs":
        """The sampler named in full (`sampling.default_sampler`), checked before any replica starts."""
        self.sampler, steps = default_sampler(self.sampler, self.steps, self.select)
        self.steps = DEFAULT_DDIM_STEPS if steps is None else steps
        make_sampler(self.sampler, None if self.sampler == "ddpm" else self.steps, eta=self.eta, dtype=self.dtype)
        return self


def _use_tracking(uri: str | None) -> None:
    if uri:
        os.environ["MLFLOW_TRACKING_URI"] = uri


def _by_model(rows: list[tuple], run) -> list:
    """`run(served, rows)` once per served model among a batch's rows (each row starts with its model), the
    answers put back in the rows' order: one `@serve.batch` call may hold requests for several models."""
    groups: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(id(row[0]), []).append(i)
    out: list = [None] * len(rows)
    for index in groups.values():
        for i, answer in zip(index, run(rows[index[0]][0], [rows[i][1:] for i in index])):
            out[i] = answer
    return out


# --------------------------------------------------------------------------------------- deployments


@serve.deployment(name="generator")
class GeneratorDeployment:
    def __init__(self, checkpoint: str = DEFAULT_MODEL_URI, settings: GenerationSettings = GenerationSettings(),
                 max_batch_size: int = 16, batch_wait_timeout_s: float = 0.01, threads: int = 1,
                 tracking_uri: str | None = None, backbone: str | None = None, data_dir: str | None = None):
        import ray

        self.torch = TorchThread(threads)
        _use_tracking(tracking_uri)
        use_gpu = bool(ray.get_gpu_ids())
        if use_gpu and not torch.cuda.is_available():
            raise RuntimeError("a GPU was assigned to this replica but torch sees no CUDA device")
        self.device = "cuda" if use_gpu else "cpu"
        self.settings, self.data_dir = settings, data_dir
        self.default = self.torch.call(load_served_generator, checkpoint, settings, self.device, backbone,
                                       data_dir)  # fails if bad
        self._generate.set_max_batch_size(max_batch_size)
        self._generate.set_batch_wait_timeout_s(batch_wait_timeout_s)
        self.batches = self.generated = 0
        self.largest_batch = 0
        # Prometheus series on Ray's metrics endpoint, tagged with deployment and replica (BENCHMARKS §4 ties them)
        self.requests_metric = metrics.Counter("padirec_adapter_requests", "adapters asked of this replica, by "
                                               "whether its cache had them", tag_keys=("cached",))
        self.generation_metric = metrics.Histogram("padirec_generation_seconds", "sampler time of one batch of "
                                                   "adapters", boundaries=SECONDS_BUCKETS)
        self.batch_metric = metrics.Histogram("padirec_generation_batch_size", "adapters generated per sampler call",
                                              boundaries=[1, 2, 4, 8, 16, 32, 64])
        log.info("generator %s ready on %s (%s)", checkpoint, self.device, self.default.sampler)

    @serve.multiplexed(max_num_models_per_replica=MAX_MODELS_PER_REPLICA)
    async def _load(self, model_id: str) -> ServedGenerator:
        return await self.torch.run(load_served_generator, model_id, self.settings, self.device, None,
                                    self.data_dir, False)

    async def served(self) -> ServedGenerator:
        """The model this request names (`multiplexed_model_id`), the default when it names none."""
        model_id = serve.get_multiplexed_model_id()
        return self.default if model_id in ("", self.default.model_id) else await self._load(model_id)

    async def describe(self) -> dict:
        served = await self.served()
        return {"generator": served.info,
                "cache": {**served.cache.stats(), "batches": self.batches, "generated": self.generated,
                          "largest_batch": self.largest_batch, "in_flight": len(served.pending)}}

    async def adapter(self, weights: list[float]) -> dict:
        """`{"weights": rounded w, "params": float32 [1096], "cached": bool}` for one w."""
        served = await self.served()
        key = served.cache.key(weights)
        params = served.cache.get(key)
        self.requests_metric.inc(tags={"cached": str(params is not None).lower()})
        if params is not None:
            return {"weights": list(key), "params": params, "cached": True}
        pending = served.pending.get(key)
        if pending is None:  # the first request for this w generates it; the others wait for that
            pending = asyncio.ensure_future(self._generate((served, key)))
            served.pending[key] = pending
            pending.add_done_callback(lambda future, key=key: self._settle(served, key, future))
        params = await asyncio.shield(pending)  # a cancelled request does not cancel the shared generation
        return {"weights": list(key), "params": params, "cached": False}

    @staticmethod
    def _settle(served: ServedGenerator, key: tuple[float, ...], future: asyncio.Future) -> None:
        served.pending.pop(key, None)
        if not future.cancelled() and future.exception() is None:
            served.cache.put(key, future.result())

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _generate(self, rows: list[tuple]) -> list[np.ndarray]:
        started = time.perf_counter()
        flat = await self.torch.run(_by_model, rows, self._sample)
        self.generation_metric.observe(time.perf_counter() - started)
        self.batch_metric.observe(len(rows))
        self.batches += 1
        self.generated += len(rows)
        self.largest_batch = max(self.largest_batch, len(rows))
        log.debug("generated %d adapters in %.3f s", len(rows), time.perf_counter() - started)
        return flat

    def _sample(self, served: ServedGenerator, keys: list[tuple]) -> list[np.ndarray]:
        w = np.asarray([key for (key,) in keys], dtype=np.float32)
        if served.best_of is not None:
            return list(select_adapters(served.best_of, w))
        return list(generate_adapters(served.generator, w, served.sampler, self.settings.seed))


@serve.deployment(name="recommender")
class RecommenderDeployment:
    def __init__(self, checkpoint: str = DEFAULT_MODEL_URI, backbone: str | None = None, max_batch_size: int = 16,
                 batch_wait_timeout_s: float = 0.01, threads: int = 1, tracking_uri: str | None = None,
                 data_dir: str | None = None):
        self.torch = TorchThread(threads)
        _use_tracking(tracking_uri)
        self.data_dir = data_dir
        self.default = self.torch.call(load_served_backbone, checkpoint, backbone, data_dir)
        self._rank.set_max_batch_size(max_batch_size)
        self._rank.set_batch_wait_timeout_s(batch_wait_timeout_s)
        self.scoring_metric = metrics.Histogram("padirec_scoring_seconds", "full-catalogue ranking time of one batch "
                                                "of (history, adapter) rows", boundaries=SECONDS_BUCKETS)

    @serve.multiplexed(max_num_models_per_replica=MAX_MODELS_PER_REPLICA)
    async def _load(self, model_id: str) -> ServedBackbone:
        return await self.torch.run(load_served_backbone, model_id, None, self.data_dir)

    async def served(self) -> ServedBackbone:
        model_id = serve.get_multiplexed_model_id()
        return self.default if model_id in ("", self.default.model_id) else await self._load(model_id)

    async def describe(self) -> dict:
        return (await self.served()).info

    async def model_page(self) -> dict:
        """What the control page needs from this side: the catalogue's summary and the report's curve."""
        catalogue = (await self.served()).catalogue
        return {"catalogue": catalogue.summary(), "curve": catalogue.curve, "report_run_id": catalogue.report_run_id}

    async def recommend(self, history: list[int] | None, params: np.ndarray, k: int, times: list[float] | None = None,
                        user: str | None = None, describe: bool = False) -> dict:
        """Top-k for a history, or for a user's test split (with the list's metrics); `{"error": ...}` for a user
        the data does not have."""
        served = await self.served()
        case = served.catalogue.user_case(user) if user is not None else None
        if case is not None:
            if "error" in case:
                return case
            history, times = case["history"], case["times"]
        ranked = await self._rank((served, history, params, k, times))
        if case is not None:
            ranked.update(user=str(user), history=history, held_out=case["held_out"],
                          metrics=served.catalogue.list_metrics(ranked["items"], case["held_out"]))
        if describe:
            named = ranked["items"] + history[-served.backbone.config.max_len:] + ([case["held_out"]] if case else [])
            ranked["details"] = served.catalogue.describe(named)
        return ranked

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _rank(self, rows: list[tuple]) -> list[dict]:
        started = time.perf_counter()
        ranked = await self.torch.run(_by_model, rows, self._score)
        self.scoring_metric.observe(time.perf_counter() - started)
        return ranked

    @staticmethod
    def _score(served: ServedBackbone, rows: list[tuple]) -> list[dict]:
        histories, params, ks, times = zip(*rows)
        return recommend_batch(served.backbone, list(histories), np.stack(params), list(ks), list(times))


# -------------------------------------------------------------------------------------------- builder


def _absolute(reference: str | None) -> str | None:
    """Local paths made absolute (replicas run in another working directory); URIs and run ids kept."""
    if reference and "://" not in reference and Path(reference).exists():
        return str(Path(reference).resolve())
    return reference


def check_against_model(config: AppArgs) -> None:
    """What can only be checked against the model, before any replica starts: DDIM takes at most the model's T
    steps. (`serve()` calls it; under `serve run` the generator replica raises the same errors.)"""
    _use_tracking(config.tracking_uri)
    recorded = load_checkpoint(resolve_generator_file(_absolute(config.checkpoint)))
    steps = recorded.schedule_config.get("steps")
    if config.sampler != "ddpm" and steps and config.steps > steps:
        raise ValueError(f"steps={config.steps} is more than the model's {steps} diffusion steps (T); "
                         f"{config.sampler} takes 1..{steps}")


def build_app(args: dict | None = None) -> Application:
    """The Serve application builder (`serve run padirec.serving.app:build_app key=value ...`)."""
    config = AppArgs.model_validate(dict(args or {}))
    checkpoint, backbone = _absolute(config.checkpoint), _absolute(config.backbone)
    if checkpoint.startswith("models:/"):
        checkpoint = registered_model_id(checkpoint)  # so that a request naming it gets the default
    uri = config.tracking_uri or tracking.tracking_uri()
    ongoing = max(config.max_ongoing_requests, config.max_batch_size)  # else batches never fill
    threads = max(1, int(config.num_cpus))
    batching = {"max_batch_size": config.max_batch_size, "batch_wait_timeout_s": config.batch_wait_timeout_s}
    settings = GenerationSettings(**config.model_dump(include={f.name for f in fields(GenerationSettings)}))
    generator = GeneratorDeployment.options(
        num_replicas=config.num_replicas, max_ongoing_requests=ongoing,
        ray_actor_options={"num_cpus": config.num_cpus, "num_gpus": config.num_gpus},
    ).bind(checkpoint, settings, threads=threads, tracking_uri=uri, backbone=backbone,
           data_dir=_absolute(config.data_dir), **batching)
    recommender = RecommenderDeployment.options(
        num_replicas=config.num_replicas, max_ongoing_requests=ongoing,
        ray_actor_options={"num_cpus": config.recommender_num_cpus},
    ).bind(checkpoint, backbone, tracking_uri=uri, data_dir=_absolute(config.data_dir), **batching)
    return PaDiRecAPI.options(max_ongoing_requests=ongoing * config.num_replicas,
                              ray_actor_options={"num_cpus": 0.1}).bind(
        generator, recommender, config.max_history, config.max_body_bytes, config.cache_size, checkpoint,
        tuple(m for m in config.models if m != checkpoint))

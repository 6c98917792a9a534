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
  never recommended.
- `PaDiRecAPI`, the FastAPI ingress: `POST /v1/adapters`, `POST /v1/recommendations`, `GET /healthz`, and
  FastAPI's `/openapi.json` and `/docs`. Bad requests get a 4xx with a reason (`schemas.py`), never a 500; the
  body-size limit and the count of rejected requests are `http.py`'s. The ingress keeps the adapters it returned
  (its own LRU by rounded w, with the encoded answer), so a cache hit never reaches the generator.

`build_app(args)` is the Serve application builder:

    serve run padirec.serving.app:build_app checkpoint=models:/padirec-dit@champion
    serve deploy padirec/serving/serve_config.yaml

Cache statistics are per generator replica (`/healthz` reports the replica that answered).
"""

# no `from __future__ import annotations`: FastAPI reads the route signatures of the Serve ingress class, whose
# string annotations it cannot resolve (a body model would turn into a query parameter)
import asyncio
import base64
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from fastapi import HTTPException
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application, metrics
from ray.serve.handle import DeploymentHandle

from padirec import tracking
from padirec.contracts.artifacts import generator_lineage, resolve_backbone_file, resolve_generator_file
from padirec.contracts.checkpoint import load_checkpoint
from padirec.contracts.names import DEFAULT_MODEL_URI, GENERATOR_RUN_TAG, MODEL_VERSION_TAG
from padirec.diffusion.generator import load_generator
from padirec.diffusion.sampling import DEFAULT_DDIM_STEPS, make_sampler
from padirec.models import load_backbone
from padirec.models.adapter import HIDDEN_SIZE, layout_dict
from padirec.objectives import OBJECTIVES
from padirec.serving.engine import AdapterCache, generate_adapters, recommend_batch
from padirec.serving.http import DEFAULT_MAX_BODY_BYTES, api, configure_ingress
from padirec.serving.schemas import (
    DEFAULT_MAX_HISTORY,
    AdapterRequest,
    AdapterResponse,
    HealthResponse,
    ModelLimits,
    RecommendationRequest,
    RecommendationResponse,
    RequestError,
    check_recommendation,
    check_weights,
)

log = logging.getLogger(__name__)

APP_NAME = "padirec"
MAX_GUIDANCE = 10.0  # beyond a few units CFG only pushes adapters off the training range (BENCHMARKS §5)
SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]


class AppArgs(BaseModel):
    """Arguments of `build_app` (strings from `serve run ... key=value` are converted)."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str = Field(DEFAULT_MODEL_URI, description="dit.pt path, training run id, runs:/ or models:/ URI")
    backbone: str | None = Field(None, description="backbone.pt path or run id (default: the generator's)")
    cache_size: int = Field(1024, ge=0, description="adapters kept per generator replica (0: no cache)")
    precision: int = Field(3, ge=0, le=10, description="decimals w is rounded to (cache key and generation)")
    sampler: Literal["ddim", "ddpm"] = "ddim"
    steps: int = Field(DEFAULT_DDIM_STEPS, ge=1,
                       description="ddim steps (1 = one x0 prediction from noise; ddpm always runs all T)")
    guidance: float = Field(0.0, ge=0.0, le=MAX_GUIDANCE, allow_inf_nan=False,
                            description=f"classifier-free guidance gamma in [0, {MAX_GUIDANCE}] (0: none)")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="ddim noise; > 0 makes an adapter batch-dependent")
    seed: int = Field(0, description="seed of the initial noise, the same for every w")
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


def _use_tracking(uri: str | None) -> None:
    if uri:
        os.environ["MLFLOW_TRACKING_URI"] = uri


def backbone_reference(checkpoint: str, backbone: str | None = None) -> str:
    """The backbone to serve: `backbone` if given, else the generator checkpoint's `backbone_run_id`."""
    if backbone:
        return backbone
    run_id = load_checkpoint(resolve_generator_file(checkpoint)).backbone_run_id
    if not run_id:
        raise ValueError(f"the generator {checkpoint} names no backbone run (its dataset had no backbone_run_id); "
                         "pass backbone=PATH_OR_RUN_ID")
    return run_id


def load_serving_backbone(reference: str, device: str = "cpu"):
    """A frozen backbone from a `backbone.pt` path, an MLflow run id or a `runs:/` URI."""
    backbone, _ = load_backbone(resolve_backbone_file(reference), device)
    if backbone.config.hidden != HIDDEN_SIZE:
        raise ValueError(f"backbone hidden size {backbone.config.hidden} != the adapter's {HIDDEN_SIZE}")
    return backbone


# --------------------------------------------------------------------------------------- deployments


@serve.deployment(name="generator")
class GeneratorDeployment:
    def __init__(self, checkpoint: str = DEFAULT_MODEL_URI, cache_size: int = 1024, precision: int = 3,
                 sampler: str = "ddim", steps: int = DEFAULT_DDIM_STEPS, guidance: float = 0.0, eta: float = 0.0,
                 seed: int = 0, max_batch_size: int = 16, batch_wait_timeout_s: float = 0.01, threads: int = 1,
                 tracking_uri: str | None = None):
        import ray

        torch.set_num_threads(max(1, threads))
        _use_tracking(tracking_uri)
        use_gpu = bool(ray.get_gpu_ids())
        if use_gpu and not torch.cuda.is_available():
            raise RuntimeError("a GPU was assigned to this replica but torch sees no CUDA device")
        device = "cuda" if use_gpu else "cpu"
        self.generator = load_generator(resolve_generator_file(checkpoint), device)
        self.sampler = make_sampler(sampler, None if sampler == "ddpm" else steps, self.generator.schedule.num_steps,
                                    eta=eta, guidance=guidance)
        self.seed = seed
        self.cache = AdapterCache(cache_size, precision)
        self._pending: dict[tuple[float, ...], asyncio.Future] = {}
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
        meta = self.generator.metadata
        lineage = generator_lineage(checkpoint)  # run id and registered version when served from MLflow
        self.info = {"checkpoint": checkpoint, "generator_run_id": lineage.get(GENERATOR_RUN_TAG),
                     "model_version": lineage.get(MODEL_VERSION_TAG),
                     "epoch": meta.get("epoch"), "dataset_sha256": meta.get("dataset_sha256"),
                     "backbone_run_id": meta.get("backbone_run_id"), "sweep_run_id": meta.get("sweep_run_id"),
                     "cond_dim": self.generator.cond_dim, "objectives": list(OBJECTIVES)[: self.generator.cond_dim],
                     "sampler": asdict(self.sampler), "seed": seed, "device": device, "precision": precision}
        log.info("generator %s ready on %s (%s)", checkpoint, device, self.sampler)

    def describe(self) -> dict:
        return {"generator": self.info,
                "cache": {**self.cache.stats(), "batches": self.batches, "generated": self.generated,
                          "largest_batch": self.largest_batch, "in_flight": len(self._pending)}}

    async def adapter(self, weights: list[float]) -> dict:
        """`{"weights": rounded w, "params": float32 [1096], "cached": bool}` for one w."""
        key = self.cache.key(weights)
        params = self.cache.get(key)
        self.requests_metric.inc(tags={"cached": str(params is not None).lower()})
        if params is not None:
            return {"weights": list(key), "params": params, "cached": True}
        pending = self._pending.get(key)
        if pending is None:  # the first request for this w generates it; the others wait for that
            pending = asyncio.ensure_future(self._generate(key))
            self._pending[key] = pending
            pending.add_done_callback(lambda future, key=key: self._settle(key, future))
        params = await asyncio.shield(pending)  # a cancelled request does not cancel the shared generation
        return {"weights": list(key), "params": params, "cached": False}

    def _settle(self, key: tuple[float, ...], future: asyncio.Future) -> None:
        self._pending.pop(key, None)
        if not future.cancelled() and future.exception() is None:
            self.cache.put(key, future.result())

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _generate(self, keys: list[tuple[float, ...]]) -> list[np.ndarray]:
        w = np.asarray(keys, dtype=np.float32)
        started = time.perf_counter()
        flat = await asyncio.to_thread(generate_adapters, self.generator, w, self.sampler, self.seed)
        self.generation_metric.observe(time.perf_counter() - started)
        self.batch_metric.observe(len(keys))
        self.batches += 1
        self.generated += len(keys)
        self.largest_batch = max(self.largest_batch, len(keys))
        log.debug("generated %d adapters in %.3f s", len(keys), time.perf_counter() - started)
        return list(flat)


@serve.deployment(name="recommender")
class RecommenderDeployment:
    def __init__(self, checkpoint: str = DEFAULT_MODEL_URI, backbone: str | None = None, max_batch_size: int = 16,
                 batch_wait_timeout_s: float = 0.01, threads: int = 1, tracking_uri: str | None = None):
        torch.set_num_threads(max(1, threads))
        _use_tracking(tracking_uri)
        self.reference = backbone_reference(checkpoint, backbone)
        self.backbone = load_serving_backbone(self.reference)
        self._rank.set_max_batch_size(max_batch_size)
        self._rank.set_batch_wait_timeout_s(batch_wait_timeout_s)
        self.scoring_metric = metrics.Histogram("padirec_scoring_seconds", "full-catalogue ranking time of one batch "
                                                "of (history, adapter) rows", boundaries=SECONDS_BUCKETS)
        config = self.backbone.config
        self.info = {"backbone": self.reference, "name": config.name, "n_items": config.n_items,
                     "max_len": config.max_len, "hidden": config.hidden}

    def describe(self) -> dict:
        return self.info

    async def recommend(self, history: list[int], params: np.ndarray, k: int,
                        times: list[float] | None = None) -> dict:
        return await self._rank((history, params, k, times))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _rank(self, rows: list[tuple]) -> list[dict]:
        histories, params, ks, times = zip(*rows)
        started = time.perf_counter()
        ranked = await asyncio.to_thread(recommend_batch, self.backbone, list(histories), np.stack(params),
                                         list(ks), list(times))
        self.scoring_metric.observe(time.perf_counter() - started)
        return ranked


# -------------------------------------------------------------------------------------------- ingress

@serve.deployment(name="api")
@serve.ingress(api)
class PaDiRecAPI:
    def __init__(self, generator: DeploymentHandle, recommender: DeploymentHandle,
                 max_history: int = DEFAULT_MAX_HISTORY, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 cache_size: int = 1024):
        configure_ingress(max_body_bytes)
        self.generator, self.recommender = generator, recommender
        self.max_history, self.cache_size = max_history, cache_size
        self._limits: ModelLimits | None = None
        self._generator_info: dict = {}
        # adapters this replica has returned, by rounded w: (params, the JSON of a cached answer). A hit is answered
        # here, without the hop to the generator or encoding 1,096 floats again (BENCHMARKS §4: the hit path's cost)
        self.answers: AdapterCache | None = None
        self.hits_metric = metrics.Counter("padirec_ingress_cache_hits", "adapters the ingress answered from its "
                                           "own cache, without asking the generator")

    async def limits(self) -> ModelLimits:
        if self._limits is None:
            generator = await self.generator.describe.remote()
            recommender = await self.recommender.describe.remote()
            self._generator_info = generator["generator"]
            self._limits = ModelLimits(generator["generator"]["cond_dim"], recommender["n_items"], self.max_history)
            self.answers = AdapterCache(self.cache_size, generator["generator"]["precision"])
        return self._limits

    async def adapter_for(self, w: np.ndarray, encoding: str = "json"
                          ) -> tuple[np.ndarray, tuple[float, ...], bool, bytes | None]:
        """(params, rounded w, cached, the JSON of `/v1/adapters`'s answer in `encoding` when this replica already
        had the adapter)."""
        key = self.answers.key(w)
        known = self.answers.get(key)
        if known is not None:
            self.hits_metric.inc()
            if encoding not in known[1]:  # encoded at the first hit, not on every miss
                known[1][encoding] = self._answer(key, known[0], True, encoding)
            return known[0], key, True, known[1][encoding]
        result = await self.generator.adapter.remote(w.tolist())
        params = result["params"]
        self.answers.put(key, (params, {}))
        return params, tuple(result["weights"]), result["cached"], None

    def _answer(self, key: tuple[float, ...], params: np.ndarray, cached: bool, encoding: str) -> bytes:
        values = ({"params_base64": base64.b64encode(params.astype("<f4").tobytes()).decode()}
                  if encoding == "base64" else {"params": params.tolist()})
        return AdapterResponse(weights=list(key), layout=layout_dict(), cached=cached, generator=self._generator_info,
                               **values).model_dump_json(exclude_none=True).encode()

    @api.get("/healthz", response_model=HealthResponse)
    async def healthz(self) -> dict[str, Any]:
        generator = await self.generator.describe.remote()
        recommender = await self.recommender.describe.remote()
        ingress = self.answers.stats() if self.answers else {}
        return {"status": "ok", "generator": generator["generator"],
                "cache": {**generator["cache"], "ingress": ingress}, "recommender": recommender}

    @api.post("/v1/adapters", response_model=AdapterResponse)
    async def adapters(self, request: AdapterRequest) -> Response:
        """The generated adapter (1096 floats in `layout` order) for a preference weight."""
        limits = await self.limits()
        try:
            w = check_weights(request.weights, limits)
        except RequestError as err:
            raise HTTPException(status_code=422, detail=str(err)) from err
        params, key, cached, answer = await self.adapter_for(w, request.encoding)
        return Response(answer or self._answer(key, params, cached, request.encoding), media_type="application/json")

    @api.post("/v1/recommendations", response_model=RecommendationResponse)
    async def recommendations(self, request: RecommendationRequest) -> RecommendationResponse:
        """Top-k items for a history under the adapter generated for the weights (history items excluded)."""
        limits = await self.limits()
        try:
            w = check_recommendation(request, limits)
        except RequestError as err:
            raise HTTPException(status_code=422, detail=str(err)) from err
        params, key, cached, _ = await self.adapter_for(w)
        ranked = await self.recommender.recommend.remote(request.history, params, request.k, request.times)
        return RecommendationResponse(items=ranked["items"], scores=ranked["scores"], weights=list(key),
                                      cached=cached)


# -------------------------------------------------------------------------------------------- builder


def _absolute(reference: str | None) -> str | None:
    """Local paths made absolute (replicas run in another working directory); URIs and run ids kept."""
    if reference and "://" not in reference and Path(reference).exists():
        return str(Path(reference).resolve())
    return reference


def check_against_model(config: AppArgs) -> None:
    """What can only be checked against the model, before any replica starts: DDIM takes at most the model's T
    steps. (`serve()` calls it; under `serve run` the generator replica raises the same error.)"""
    _use_tracking(config.tracking_uri)
    steps = load_checkpoint(resolve_generator_file(_absolute(config.checkpoint))).schedule_config.get("steps")
    if config.sampler == "ddim" and steps and config.steps > steps:
        raise ValueError(f"steps={config.steps} is more than the model's {steps} diffusion steps (T); "
                         f"DDIM takes 1..{steps}")


def build_app(args: dict | None = None) -> Application:
    """The Serve application builder (`serve run padirec.serving.app:build_app key=value ...`)."""
    config = AppArgs.model_validate(dict(args or {}))
    checkpoint, backbone = _absolute(config.checkpoint), _absolute(config.backbone)
    uri = config.tracking_uri or tracking.tracking_uri()
    ongoing = max(config.max_ongoing_requests, config.max_batch_size)  # else batches never fill
    threads = max(1, int(config.num_cpus))
    batching = {"max_batch_size": config.max_batch_size, "batch_wait_timeout_s": config.batch_wait_timeout_s}
    generator = GeneratorDeployment.options(
        num_replicas=config.num_replicas, max_ongoing_requests=ongoing,
        ray_actor_options={"num_cpus": config.num_cpus, "num_gpus": config.num_gpus},
    ).bind(checkpoint, config.cache_size, config.precision, config.sampler, config.steps, config.guidance,
           config.eta, config.seed, threads=threads, tracking_uri=uri, **batching)
    recommender = RecommenderDeployment.options(
        num_replicas=config.num_replicas, max_ongoing_requests=ongoing,
        ray_actor_options={"num_cpus": config.recommender_num_cpus},
    ).bind(checkpoint, backbone, tracking_uri=uri, **batching)
    return PaDiRecAPI.options(max_ongoing_requests=ongoing * config.num_replicas,
                              ray_actor_options={"num_cpus": 0.1}).bind(generator, recommender, config.max_history,
                                                                        config.max_body_bytes, config.cache_size)

"""The ingress deployment: FastAPI routes over the generator and recommender handles, one `ModelState` per served
model (its handles with the multiplexed model id, its limits, and the adapters this replica already answered, so
that a cache hit never reaches the generator). `serving.app` binds it."""

# no `from __future__ import annotations`: FastAPI reads the route signatures of the Serve ingress class, whose
# string annotations it cannot resolve (a body model would turn into a query parameter)
import base64
import gc
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from fastapi import HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle

from padirec.contracts.names import DEFAULT_MODEL_URI
from padirec.models.adapter import layout_dict
from padirec.serving.engine import AdapterCache
from padirec.serving.http import DEFAULT_MAX_BODY_BYTES, REPLAY_KEY, api, configure_ingress
from padirec.serving.schemas import (
    DEFAULT_MAX_HISTORY,
    AdapterRequest,
    AdapterResponse,
    HealthResponse,
    ModelLimits,
    ModelResponse,
    RecommendationRequest,
    RecommendationResponse,
    RequestError,
    adapter_query,
    check_recommendation,
    check_weights,
)
from padirec.serving.served import registered_model_id


@dataclass
class ModelState:
    """What the ingress knows of one served model: its handles, limits, and the adapters it answered."""

    generator: DeploymentHandle
    recommender: DeploymentHandle
    limits: ModelLimits
    info: dict  # the generator's description
    recommender_info: dict
    answers: AdapterCache


@serve.deployment(name="api")
@serve.ingress(api)
class PaDiRecAPI:
    def __init__(self, generator: DeploymentHandle, recommender: DeploymentHandle,
                 max_history: int = DEFAULT_MAX_HISTORY, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 cache_size: int = 1024, default_model: str = DEFAULT_MODEL_URI, models: tuple[str, ...] = ()):
        self.replay, self.hits_metric = configure_ingress(max_body_bytes, cache_size)  # (not `api.state`: a copy here)
        self.generator, self.recommender = generator, recommender
        self.max_history, self.cache_size = max_history, cache_size
        self.default_model, self.allowed = default_model, tuple(models)
        self.served_models = [m.removeprefix("models:/") for m in (default_model, *self.allowed)]  # default first
        # per model: adapters this replica has returned, by rounded w: (params, the JSON of a cached answer). A hit
        # is answered here, without the hop to the generator or encoding 1,096 floats again (BENCHMARKS §4)
        self.models: dict[str, ModelState] = {}
        gc.freeze()  # the imports' objects (torch, MLflow) out of the collector's full passes (BENCHMARKS §4)

    def model_id(self, requested: str | None) -> str:
        """The multiplexed model id a request names: "" (the default model) or an allow-listed registered model."""
        if requested is None:
            return ""
        try:
            model = registered_model_id(requested)
        except ValueError as err:
            raise HTTPException(status_code=422, detail=str(err)) from err
        if model == self.default_model:
            return ""
        if model not in self.allowed:
            raise HTTPException(status_code=422, detail=f"model {requested[:80]!r} is not served here; this "
                                                        f"deployment serves {self.served_models}")
        return model

    async def state(self, model_id: str = "") -> ModelState:
        known = self.models.get(model_id)
        if known is None:
            generator = self.generator.options(multiplexed_model_id=model_id) if model_id else self.generator
            recommender = self.recommender.options(multiplexed_model_id=model_id) if model_id else self.recommender
            info = (await generator.describe.remote())["generator"]
            backbone = await recommender.describe.remote()
            known = ModelState(generator, recommender,
                               ModelLimits(info["cond_dim"], backbone["n_items"], self.max_history,
                                           tuple(info["objectives"])), info, backbone,
                               AdapterCache(self.cache_size, info["precision"]))
            self.models[model_id] = known
        return known

    async def adapter_for(self, model: ModelState, w: np.ndarray, encoding: str = "json"
                          ) -> tuple[np.ndarray, tuple[float, ...], bool, bytes | None]:
        """(params, rounded w, cached, the JSON of `/v1/adapters`'s answer in `encoding` when this replica already
        had the adapter)."""
        key = model.answers.key(w)
        known = model.answers.get(key)
        if known is not None:
            self.hits_metric.inc()
            if encoding not in known[1]:  # encoded at the first hit, not on every miss
                known[1][encoding] = self._answer(model, key, known[0], True, encoding)
            return known[0], key, True, known[1][encoding]
        result = await model.generator.adapter.remote(w.tolist())
        params = result["params"]
        model.answers.put(key, (params, {}))
        return params, tuple(result["weights"]), result["cached"], None

    @staticmethod
    def _answer(model: ModelState, key: tuple[float, ...], params: np.ndarray, cached: bool, encoding: str) -> bytes:
        values = ({"params_base64": base64.b64encode(params.astype("<f4").tobytes()).decode()}
                  if encoding == "base64" else {"params": params.tolist()})
        return AdapterResponse(weights=list(key), layout=layout_dict(), cached=cached, generator=model.info,
                               **values).model_dump_json(exclude_none=True).encode()

    @api.get("/healthz", response_model=HealthResponse)
    async def healthz(self) -> dict[str, Any]:
        model = await self.state()
        generator = await model.generator.describe.remote()
        recommender = await model.recommender.describe.remote()
        return {"status": "ok", "generator": generator["generator"],
                "cache": {**generator["cache"], "ingress": {**model.answers.stats(), "replayed": self.replay.hits}},
                "recommender": recommender,
                "models": self.served_models}

    @api.get("/v1/model", response_model=ModelResponse)
    async def model_info(self, model: str | None = None) -> dict[str, Any]:
        """The served model's objectives, items, users and trade-off curve (what the control page at / shows)."""
        state = await self.state(self.model_id(model))
        page = await state.recommender.model_page.remote()
        return {"objectives": state.info["objectives"], "n_items": state.limits.n_items,
                "max_history": state.limits.max_history, "generator": state.info, "recommender": state.recommender_info,
                **page}

    @api.post("/v1/adapters", response_model=AdapterResponse)
    async def adapters(self, request: AdapterRequest, http: Request) -> Response:
        """The generated adapter (1096 floats in `layout` order) for a preference weight."""
        return await self._adapter(request, http)

    @api.get("/v1/adapters", response_model=AdapterResponse)
    async def adapter_by_query(self, http: Request,
                               weights: str = Query(description="comma-separated, one per objective of the model "
                                                                "in its order (GET /v1/model), summing to 1: 0.3,0.7"),
                               encoding: Literal["json", "base64"] = "json", model: str | None = None) -> Response:
        """The same as the POST, for clients and HTTP caches that prefer a GET; also the fastest way on Ray Serve (no
        request body for the replica to fetch from the proxy, BENCHMARKS §4)."""
        state = await self.state(self.model_id(model))  # its objectives name the weights in a message
        try:
            request = adapter_query(weights, encoding, model, state.limits.objectives)
        except ValidationError as err:
            raise RequestValidationError(err.errors()) from err
        except ValueError as err:
            raise HTTPException(status_code=422, detail=str(err)) from err
        return await self._adapter(request, http, state)

    async def _adapter(self, request: AdapterRequest, http: Request, model: ModelState | None = None) -> Response:
        model = model or await self.state(self.model_id(request.model))
        try:
            w = check_weights(request.weights, model.limits)
        except RequestError as err:
            raise HTTPException(status_code=422, detail=str(err)) from err
        params, key, cached, answer = await self.adapter_for(model, w, request.encoding)
        if answer is not None:  # a hit: the same request again is answered before it is parsed
            self.replay.put(http.scope.get(REPLAY_KEY), answer)
        return Response(answer or self._answer(model, key, params, cached, request.encoding),
                        media_type="application/json")

    @api.post("/v1/recommendations", response_model=RecommendationResponse, response_model_exclude_none=True)
    async def recommendations(self, request: RecommendationRequest) -> RecommendationResponse:
        """Top-k items for a history (or a user of the model's data) under the adapter generated for the weights
        (history items excluded)."""
        model = await self.state(self.model_id(request.model))
        try:
            w = check_recommendation(request, model.limits)
        except RequestError as err:
            raise HTTPException(status_code=422, detail=str(err)) from err
        params, key, cached, _ = await self.adapter_for(model, w)
        user = None if request.user is None else str(request.user)
        ranked = await model.recommender.recommend.remote(request.history, params, request.k, request.times, user,
                                                          request.describe)
        if "error" in ranked:
            raise HTTPException(status_code=422, detail=ranked["error"])
        return RecommendationResponse(weights=list(key), cached=cached, **ranked)

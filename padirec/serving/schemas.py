"""Request and response models of the serving API, and the checks that need the loaded model.

Two layers of validation, both plain Python (no Ray), so that they can be unit-tested:

- the pydantic models check what a request means on its own: types (strict: `"0.3"` or `true` is not a
  number), finite non-negative weights summing to 1 (within `SUM_TOLERANCE`), a non-empty history of integers,
  `1 <= k <= MAX_K`. FastAPI turns their errors into 422s.
- `check_weights` / `check_recommendation` check it against the served model (`ModelLimits`): the objectives the
  generator is conditioned on (a dict must name exactly them, a list must have one number per objective, in their
  order), item ids in `1..n_items`, the history bound, `k` against the number of items left to recommend. They
  raise `RequestError`, which the ingress turns into a 422 whose message names the model's objectives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from padirec.objectives import OBJECTIVES

SUM_TOLERANCE = 1e-3  # |sum(w) - 1| allowed
MAX_K = 100
DEFAULT_MAX_HISTORY = 200
MAX_REPORTED_IDS = 20  # unknown item ids named in an error message
MAX_USER_CHARS = 100  # a raw user id
MAX_MODEL_CHARS = 200  # a registered model's name and version or alias
MAX_QUERY_CHARS = 200  # the weights of GET /v1/adapters
MODEL_DOC = ("a registered model of the deployment's allow-list, NAME/VERSION or NAME@ALIAS (GET /healthz lists "
             "them); default: the deployment's model")

# each weight at most 1 (+ the tolerance): weights summing to 1 cannot be larger, and huge ones would overflow
# the sum (schemathesis found 8.7e307 + 9.3e307 -> OverflowError -> 500)
Weight = Annotated[float, Field(strict=True, ge=0.0, le=1.0 + SUM_TOLERANCE, allow_inf_nan=False)]

MAX_REPORTED_NAMES = 5  # objective names of a request quoted in an error message
MAX_NAME_CHARS = 40  # ... each cut to this length
WEIGHTS_DOC = ("preference weights, one per objective of the model (GET /v1/model lists them; the paper's pair "
               f"{list(OBJECTIVES)} by default): {{\"accuracy\": 0.3, \"diversity\": 0.7}} or [0.3, 0.7] in the "
               f"model's order; finite, non-negative, summing to 1 (within {SUM_TOLERANCE})")


class RequestError(ValueError):
    """A request that is well-formed but does not fit the served model (-> HTTP 422)."""


def _names(names) -> list[str]:
    """Names a request gave, as an error message may quote them (a few, each cut short)."""
    names = sorted(str(n) for n in names)
    shown = [n if len(n) <= MAX_NAME_CHARS else n[:MAX_NAME_CHARS] + "…" for n in names[:MAX_REPORTED_NAMES]]
    return shown + ([f"… {len(names) - len(shown)} more"] if len(names) > len(shown) else [])


def weights_list(weights: dict[str, float] | list[float], objectives=OBJECTIVES) -> list[float]:
    """The weights as a list in the order of `objectives` (a model's; default: the paper's pair): a dict must name
    exactly those objectives; a list is taken as it is (`check_weights` checks its length)."""
    if isinstance(weights, dict):
        objectives = list(objectives)
        unknown = set(weights) - set(objectives)
        if unknown:
            raise ValueError(f"objective name(s) {_names(unknown)} not among the model's objectives {objectives}")
        missing = [name for name in objectives if name not in weights]
        if missing:
            raise ValueError(f"missing weight(s) for {missing}; give all of the model's objectives {objectives}")
        return [float(weights[name]) for name in objectives]
    return [float(x) for x in weights]


def _check_weights_schema(weights: dict[str, float] | list[float]) -> dict[str, float] | list[float]:
    """The sum (any names: which objectives a dict must name depends on the model, `check_weights`)."""
    total = math.fsum(weights.values() if isinstance(weights, dict) else weights)
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise ValueError(f"weights must sum to 1 (within {SUM_TOLERANCE}), got sum {total:.6g}")
    return weights


def _weights_kind(value: Any) -> str:
    return "names" if isinstance(value, dict) else "list"


# a tagged union: an error names the one form the client used, not both
Weights = Annotated[
    Annotated[dict[str, Weight], Tag("names")] | Annotated[list[Weight], Field(min_length=1), Tag("list")],
    Discriminator(_weights_kind), AfterValidator(_check_weights_schema)]


class AdapterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"weights": {"accuracy": 0.3, "diversity": 0.7}}, {"weights": [0.3, 0.7]}]})

    weights: Weights = Field(description=WEIGHTS_DOC)
    model: str | None = Field(None, max_length=MAX_MODEL_CHARS, description=MODEL_DOC)
    encoding: Literal["json", "base64"] = Field(
        "json", description="how `params` comes back: a JSON list of floats, or `params_base64` (the float32 "
                            "little-endian bytes, base64: 5,848 characters instead of about 20,000)")


def adapter_query(weights: str, encoding: str = "json", model: str | None = None,
                  objectives=OBJECTIVES) -> AdapterRequest:
    """`GET /v1/adapters?weights=0.3,0.7[&encoding=base64][&model=NAME/VERSION]` as the POST's request model (a
    ValueError or pydantic's ValidationError when it is not one); `objectives`: the named model's, for the message."""
    try:
        values = [float(x) for x in weights.split(",")] if len(weights) <= MAX_QUERY_CHARS else None
    except ValueError:
        values = None
    if values is None:
        example = ",".join(["0.3", "0.7"] if len(objectives) == 2 else _even(len(objectives)))
        raise ValueError(f"weights must be comma-separated numbers in the order {list(objectives)} (at most "
                         f"{MAX_QUERY_CHARS} characters), e.g. weights={example}")
    return AdapterRequest(weights=values, encoding=encoding, model=model)


def _even(p: int) -> list[str]:
    """p weights in 3 decimals that sum to exactly 1 (an example for a message)."""
    units = [1000 // p] * p
    units[-1] += 1000 - sum(units)
    return [f"{u / 1000:g}" for u in units]


class RecommendationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"history": [12, 7, 31], "weights": {"accuracy": 0.8, "diversity": 0.2}, "k": 10},
                     {"user": "196", "weights": [0.5, 0.5], "describe": True}]})

    history: list[Annotated[int, Field(strict=True)]] | None = Field(
        None, min_length=1, description="item ids, oldest first (the model reads the most recent max_len)")
    user: Annotated[str, Field(min_length=1, max_length=MAX_USER_CHARS)] | Annotated[int, Field(strict=True)] | None = \
        Field(None, description="instead of a history: a user of the model's data (raw id), whose test split is "
                                "ranked; the answer then has the list's metrics against the user's held-out item")
    weights: Weights = Field(description=WEIGHTS_DOC)
    model: str | None = Field(None, max_length=MAX_MODEL_CHARS, description=MODEL_DOC)
    k: int = Field(10, strict=True, ge=1, le=MAX_K, description=f"number of items, 1..{MAX_K}")
    times: list[Annotated[float, Field(strict=True, allow_inf_nan=False)]] | None = Field(
        None, description="timestamps of the history items (TiSASRec backbones; default: evenly spaced)")
    describe: bool = Field(False, strict=True, description="add `details`: title and categories of every item named")

    @model_validator(mode="after")
    def _one_source(self) -> RecommendationRequest:
        if (self.history is None) == (self.user is None):
            raise ValueError("give either a history or a user, not both" if self.history is not None
                             else "give a history (item ids) or a user")
        if self.times is not None and (self.history is None or len(self.times) != len(self.history)):
            raise ValueError("times come with a history" if self.history is None
                             else f"times has {len(self.times)} entries, history {len(self.history)}")
        return self


class LayoutEntry(BaseModel):
    name: str
    shape: list[int]
    offset: int


class AdapterResponse(BaseModel):
    weights: list[float] = Field(description="the weights the adapter was generated for (normalised, rounded)")
    params: list[float] | None = Field(None, description="the flat adapter (layout order); with encoding=json")
    params_base64: str | None = Field(None, description="the same as float32 little-endian, base64; with "
                                                        "encoding=base64")
    layout: list[LayoutEntry]
    cached: bool = Field(description="served from the replica's adapter cache")
    generator: dict[str, Any]


class ItemInfo(BaseModel):
    raw_id: str = Field(description="the item's id in the source data")
    title: str = Field(description="empty when the data has no titles")
    categories: list[str]


class RecommendationResponse(BaseModel):
    items: list[int]
    scores: list[float]
    weights: list[float]
    cached: bool
    user: str | None = Field(None, description="with a user: the user")
    history: list[int] | None = Field(None, description="with a user: the test-split history the list is for")
    held_out: int | None = Field(None, description="with a user: their held-out (test) item")
    metrics: dict[str, float] | None = Field(None, description="with a user: NDCG and α-NDCG of the list at 10 (or "
                                                               "k) against the held-out item, as the report measures; "
                                                               "tail@10, its share of long-tail items, for a model "
                                                               "with the novelty objective")
    details: dict[str, ItemInfo] | None = Field(None, description="with describe: every listed, history and "
                                                                  "held-out item by id")


class ModelResponse(BaseModel):
    objectives: list[str] = Field(description="the weights a request gives, in this order")
    n_items: int
    max_history: int
    generator: dict[str, Any]
    recommender: dict[str, Any]
    catalogue: dict[str, Any] = Field(description="whether user data and titles are available, and some user ids")
    curve: list[dict[str, Any]] = Field(description="the newest report's curves: method, w_acc, ndcg10, alpha_ndcg10")
    report_run_id: str | None


class HealthResponse(BaseModel):
    status: Literal["ok"]
    generator: dict[str, Any]
    recommender: dict[str, Any]
    cache: dict[str, Any]
    models: list[str] = Field(description="the models a request may name; the first is the default")


@dataclass(frozen=True)
class ModelLimits:
    """What the served model accepts: `objectives` names the columns of w, in order (empty: the paper's pair, as
    the generator's of an older checkpoint)."""

    cond_dim: int
    n_items: int
    max_history: int = DEFAULT_MAX_HISTORY
    objectives: tuple[str, ...] = ()

    def __post_init__(self):
        names = tuple(self.objectives) or OBJECTIVES[: self.cond_dim]
        if len(names) != self.cond_dim:
            raise ValueError(f"a model conditioned on {self.cond_dim} weights cannot have the objectives {list(names)}")
        object.__setattr__(self, "objectives", names)


def check_weights(weights: dict[str, float] | list[float], limits: ModelLimits) -> np.ndarray:
    """Validated weights as float64 `[cond_dim]` in the model's objective order, renormalised to sum exactly to 1."""
    try:
        values = np.asarray(weights_list(weights, limits.objectives), dtype=np.float64)
    except ValueError as err:
        raise RequestError(str(err)) from err
    if values.shape != (limits.cond_dim,):
        raise RequestError(f"the generator takes {limits.cond_dim} weights ({list(limits.objectives)}), "
                           f"got {len(values)}")
    if not np.isfinite(values).all() or (values < 0).any() or abs(values.sum() - 1.0) > SUM_TOLERANCE:
        raise RequestError("weights must be finite, non-negative and sum to 1")  # already checked by the schema
    return values / values.sum()


def check_recommendation(request: RecommendationRequest, limits: ModelLimits) -> np.ndarray:
    """Checks of a recommendation request against the model; returns its weights as in `check_weights`. A user's
    history comes from the model's data (the recommender checks the user)."""
    w = check_weights(request.weights, limits)
    history = request.history
    if history is None:
        return w
    if len(history) > limits.max_history:
        raise RequestError(f"history has {len(history)} items; at most {limits.max_history} are accepted")
    unknown = sorted({i for i in history if not 1 <= i <= limits.n_items})
    if unknown:
        shown = unknown[:MAX_REPORTED_IDS]
        more = f" and {len(unknown) - len(shown)} more" if len(unknown) > len(shown) else ""
        raise RequestError(f"unknown item ids (items are 1..{limits.n_items}): {shown}{more}")
    available = limits.n_items - len(set(history))
    if request.k > available:
        raise RequestError(f"k = {request.k} but only {available} items are left after excluding the history")
    return w


def json_safe(value: Any) -> Any:
    """A value that `json.dumps(allow_nan=False)` accepts (validation errors echo the input, NaN included)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bytes):
        return value[:200].decode("utf-8", errors="replace")
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)

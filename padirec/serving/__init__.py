"""Serving: the Ray Serve generation API (`app.build_app`), its request models and the `padirec serve` command.

`padirec.serving.schemas` needs only pydantic; `padirec.serving.app` imports Ray Serve and FastAPI, so it is
not imported here.
"""

from padirec.serving.schemas import (
    AdapterRequest,
    AdapterResponse,
    ModelLimits,
    RecommendationRequest,
    RecommendationResponse,
    RequestError,
    check_recommendation,
    check_weights,
)

__all__ = [
    "AdapterRequest",
    "AdapterResponse",
    "ModelLimits",
    "RecommendationRequest",
    "RecommendationResponse",
    "RequestError",
    "check_recommendation",
    "check_weights",
]

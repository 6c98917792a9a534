"""The ingress's FastAPI app, its control page at `/`, and what guards it: a body-size limit before parsing, 4xx
answers that quote at most a short prefix of the input, and a count of every rejected request
(`padirec_rejected_requests`).

`serving.app`'s `PaDiRecAPI` serves this `api` (`@serve.ingress(api)`) and calls `configure_ingress` from its
replica: Serve ships the ingress class by value, so settings must be set through this module, whose `api` is the
one the middleware reads.
"""

# no `from __future__ import annotations`: FastAPI resolves the handlers' annotations at run time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray.serve import metrics

from padirec.serving.schemas import json_safe

DEFAULT_MAX_BODY_BYTES = 64 * 1024  # a 200-item history with times is under 8 KB
ECHO_CHARS = 80  # an error message quotes at most this much of what was sent
# rejected requests are counted by these routes, else as "other"
ROUTES = ("/v1/adapters", "/v1/recommendations", "/v1/model", "/healthz")

REPLAYED_ROUTE = "/v1/adapters"
REPLAY_KEY = "padirec.replay_key"  # in the ASGI scope: what `RequestGuard` keyed a request by, for the route's answer


class AnswerReplay:
    """Answers to byte-identical `/v1/adapters` requests (a POST's body, a GET's query string), replayed by
    `RequestGuard` before FastAPI parses anything: a repeated request costs a dict lookup instead of validation and
    the route (BENCHMARKS §4: the hit path's cost).
    Only answers that were themselves cache hits are kept (they say `cached: true`), at most `capacity` (LRU);
    an answer never changes while its model is served, so nothing needs invalidating."""

    def __init__(self, capacity: int = 1024):
        self.capacity = capacity
        self._answers: OrderedDict[bytes, bytes] = OrderedDict()
        self.hits = 0

    def get(self, body: bytes) -> bytes | None:
        answer = self._answers.get(body)
        if answer is not None:
            self._answers.move_to_end(body)
            self.hits += 1
        return answer

    def put(self, body: bytes | None, answer: bytes) -> None:
        if body is None or self.capacity == 0:
            return
        self._answers[body] = answer
        while len(self._answers) > self.capacity:
            self._answers.popitem(last=False)


api = FastAPI(title="PaDiRec", version="1.0",
              description="Preference weights -> a generated adapter -> recommendations from a frozen backbone.")


def _is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _short(value: Any) -> Any:
    """`value` as an error may quote it: scalars, strings cut to `ECHO_CHARS`."""
    if isinstance(value, str) and len(value) > ECHO_CHARS:
        return value[:ECHO_CHARS] + f"… ({len(value)} characters)"
    return value


class RequestGuard:
    """A 413 for a body over the limit, decided from Content-Length before any of it is read or parsed; a body
    without a length (chunked) is refused with 411, so nothing unbounded is ever parsed. A `/v1/adapters` body seen
    before gets its answer from `AnswerReplay`. Every 4xx, these and the routes' own, is counted in
    `padirec_rejected_requests` by status and route. Plain ASGI: Starlette's `BaseHTTPMiddleware`
    (`@app.middleware`) costs a task and a stream per request, on every cache hit."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        status = 0

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        refused = _refuse_body(request, getattr(api.state, "max_body_bytes", DEFAULT_MAX_BODY_BYTES))
        replay = getattr(api.state, "replay", None)
        if refused is None and replay is not None and scope["path"] == REPLAYED_ROUTE:
            key = None
            if request.method == "GET":  # no body: Serve's replica never has to fetch one from its proxy
                key = b"GET " + scope.get("query_string", b"")
            elif request.method == "POST" and _is_json(request.headers.get("content-type", "")):
                body = await _read_body(receive)  # bounded: its Content-Length passed the limit
                key, receive = b"POST " + body, _replaying(body)
            answer = replay.get(key) if key is not None else None
            if answer is not None:
                api.state.hits_metric.inc()
                return await _send_json(send, answer)
            scope[REPLAY_KEY] = key
        await (refused or self.app)(scope, receive, send_and_note)
        rejected = getattr(api.state, "rejected_metric", None)
        if rejected is not None and 400 <= status < 500:
            route = request.url.path if request.url.path in ROUTES else "other"
            rejected.inc(tags={"status": str(status), "route": route})


async def _read_body(receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replaying(body: bytes):
    """An ASGI `receive` that gives `body` once, then waits for the disconnect like the original would."""
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}
    return receive


async def _send_json(send, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


api.add_middleware(RequestGuard)

# the control page: static files of this package, no build step; read once, served by name only
PAGE = {name: (Path(__file__).with_name("static") / name).read_bytes() for name in ("index.html", "control.js")}


@api.get("/", include_in_schema=False)
async def control_page() -> Response:
    """A slider per objective, the top-k list and the model's trade-off curve (`static/`)."""
    return Response(PAGE["index.html"], media_type="text/html; charset=utf-8")


@api.get("/static/{name}", include_in_schema=False)
async def page_file(name: str) -> Response:
    if name != "control.js":
        raise HTTPException(status_code=404, detail="no such file")
    return Response(PAGE[name], media_type="text/javascript; charset=utf-8")


def configure_ingress(max_body_bytes: int, replay_size: int = 1024) -> tuple[AnswerReplay, metrics.Counter]:
    """Settings and metrics of the middleware, on this module's `api` (called by the ingress replica); the replay
    cache, which the route fills, and the cache-hit counter, which both count on."""
    api.state.max_body_bytes = max_body_bytes
    api.state.rejected_metric = metrics.Counter("padirec_rejected_requests", "requests answered with a 4xx, by "
                                                "status and route", tag_keys=("status", "route"))
    api.state.hits_metric = metrics.Counter("padirec_ingress_cache_hits", "adapters the ingress answered from its "
                                            "own cache, without asking the generator")
    api.state.replay = AnswerReplay(replay_size)
    return api.state.replay, api.state.hits_metric


def _refuse_body(request: Request, limit: int) -> JSONResponse | None:
    if request.method in ("POST", "PUT", "PATCH"):
        length = request.headers.get("content-length")
        if length is None:
            if request.headers.get("transfer-encoding"):
                return JSONResponse(status_code=411, content={"detail": "a Content-Length header is required"})
        elif not length.isdigit() or int(length) > limit:
            return JSONResponse(status_code=413, content={
                "detail": f"request body of {_short(length)} bytes is over the limit of {limit} bytes"})
    return None


@api.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, made JSON-safe: a NaN in the request is echoed back as the string 'nan', not a 500, and no
    more than `ECHO_CHARS` of any string is quoted. A body that is not declared as JSON gets a 415 instead."""
    content_type = request.headers.get("content-type", "")
    if request.method == "POST" and content_type and not _is_json(content_type):
        return JSONResponse(status_code=415, content={
            "detail": f"Content-Type must be application/json, got {content_type.split(';')[0].strip()!r}"})
    errors = []
    for error in exc.errors():
        entry = {"loc": [_short(x) for x in error.get("loc", ())], "msg": _short(error.get("msg", "")),
                 "type": error.get("type", "")}
        value = error.get("input")
        if value is None or isinstance(value, str | int | float | bool):
            entry["input"] = _short(value)
        errors.append(entry)
    return JSONResponse(status_code=422, content={"detail": json_safe(errors)})

"""Locust users for `bench_load.py`: one class per scenario, picked by name on locust's command line.

    locust -f benchmarks/locustfile.py --headless --host http://127.0.0.1:8000 -u 8 -r 8 -t 20s HitUser

Each user sends its next request as soon as the last one is answered (no wait time): the server, not think
time, sets the rate. `FloorUser` asks the bare Ray Serve app that `bench_load.py` deploys beside PaDiRec.
"""

from __future__ import annotations

import random

from locust import FastHttpUser, constant, task

HISTORY = list(range(1, 21))  # 20 items: a short real history (item ids exist in any catalogue of >= 20 items)


class HitUser(FastHttpUser):
    """The same w every time: answered from the generator's cache after the first request."""

    wait_time = constant(0)

    @task
    def adapter(self) -> None:
        self.client.post("/v1/adapters", json={"weights": [0.5, 0.5]})


class HitCompactUser(FastHttpUser):
    """Cache hits with the compact encoding (`params_base64`: float32 bytes, base64)."""

    wait_time = constant(0)

    @task
    def adapter(self) -> None:
        self.client.post("/v1/adapters", json={"weights": [0.5, 0.5], "encoding": "base64"})


class HitGetUser(FastHttpUser):
    """Cache hits asked with `GET /v1/adapters?weights=...` (no request body for the replica to fetch)."""

    wait_time = constant(0)

    @task
    def adapter(self) -> None:
        self.client.get("/v1/adapters?weights=0.5,0.5&encoding=base64")


class MissUser(FastHttpUser):
    """A w never asked before (6 decimals; the benchmark's server rounds to 6 as well): generated every time."""

    wait_time = constant(0)

    @task
    def adapter(self) -> None:
        w = random.random()
        self.client.post("/v1/adapters", json={"weights": [w, 1 - w]})


class RecommendUser(FastHttpUser):
    """Top-10 for a fixed history under a fresh w: generation plus full-catalogue scoring."""

    wait_time = constant(0)

    @task
    def recommend(self) -> None:
        w = random.random()
        self.client.post("/v1/recommendations", json={"weights": [w, 1 - w], "history": HISTORY, "k": 10})


class FloorUser(FastHttpUser):
    """The floor: a FastAPI ingress on the same Serve proxy returning a fixed 1,096-float body."""

    wait_time = constant(0)

    @task
    def floor(self) -> None:
        self.client.post("/floor/v1/adapters", json={"weights": [0.5, 0.5]})

"""Load test of the Serve app with locust (headless), beside a bare Ray Serve app measured in the same run.

    python benchmarks/bench_load.py --checkpoint models:/padirec-dit/1 [--clients 1,8,32] [--seconds 20] \
        [--json load.json]

Starts a local Ray cluster (4 logical CPUs) and Serve on a free loopback port with two applications on the
same proxy: PaDiRec (`padirec.serving.app:build_app`, one DDIM step, w rounded to 6 decimals so that "fresh"
weights stay fresh) at `/`, and the floor at `/floor`: a FastAPI ingress that returns a fixed body of 1,096
floats, what Ray Serve costs on this machine before any of PaDiRec's work. Then, for each number of clients,
runs locust (`benchmarks/locustfile.py`) for `--seconds` per scenario: floor, cache hits (one w; JSON, the
compact base64 encoding, and base64 by `GET /v1/adapters?weights=...`), fresh weights (`/v1/adapters`),
recommendations (fresh w, 20-item history, top-10). Prints a Markdown table: requests/s, p50 and p99 from
locust's own statistics, each scenario's req/s as a share of the floor's at the same client count, and the cache
hits and misses the server counted. The load generator runs on the same cores as the server, as the floor does.
Needs `pip install locust`.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import requests
from bench_serve import free_port  # benchmarks/ is on sys.path when a script here runs
from fastapi import FastAPI, Response

HERE = Path(__file__).resolve().parent
SCENARIOS = {"floor": "FloorUser", "hit": "HitUser", "hit, base64": "HitCompactUser", "hit, GET base64": "HitGetUser",
             "miss": "MissUser", "recommend": "RecommendUser"}
# issue 16.2: req/s as a share of the floor's
TARGETS = {"hit": 0.8, "hit, base64": 0.8, "hit, GET base64": 0.8, "miss": 0.5, "recommend": 0.5}
FIXED = json.dumps({"weights": [0.5, 0.5], "params": np.zeros(1096).tolist(), "cached": True}).encode()

floor_api = FastAPI()


def floor_app():
    """The bare Ray Serve app: a FastAPI ingress like PaDiRec's, a body of the size of its adapter answer
    (already encoded), no work; as many requests in flight as PaDiRec's ingress allows (128 by default)."""
    from ray import serve

    @serve.deployment(name="floor", max_ongoing_requests=128)
    @serve.ingress(floor_api)
    class Floor:
        @floor_api.post("/v1/adapters")
        async def adapters(self) -> Response:  # encoded once: the floor does no per-request work
            return Response(FIXED, media_type="application/json")

    return Floor.bind()


def start(args: argparse.Namespace) -> str:
    import ray
    from ray import serve

    from padirec.serving.app import APP_NAME, build_app

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"checkpoint": args.checkpoint, "backbone": args.backbone, "precision": 6}), name=APP_NAME,
              route_prefix="/")
    serve.run(floor_app(), name="floor", route_prefix="/floor")
    return f"http://127.0.0.1:{port}"


def locust(url: str, user: str, clients: int, seconds: int, workdir: Path) -> dict:
    """One headless locust run; its aggregated statistics."""
    prefix = workdir / f"{user}-{clients}"
    cmd = [sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless", "--host", url,
           "-u", str(clients), "-r", str(clients), "-t", f"{seconds}s", "--csv", str(prefix), "--only-summary",
           "--stop-timeout", "5", user]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=seconds + 120)
    with open(f"{prefix}_stats.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    return {"requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
            "requests_per_s": round(float(row["Requests/s"]), 1), "p50_ms": float(row["50%"]),
            "p99_ms": float(row["99%"])}


def cache_counts(url: str) -> dict:
    """Hits answered by the ingress or the generator replica; misses are the adapters the generator had to make."""
    cache = requests.get(url + "/healthz", timeout=60).json()["cache"]
    ingress = cache.get("ingress", {})  # its LRU's hits and the answers it replayed before parsing
    return {"hits": ingress.get("hits", 0) + ingress.get("replayed", 0) + cache.get("hits", 0),
            "misses": cache.get("misses", 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="dit.pt, run id or models:/ URI")
    parser.add_argument("--backbone", help="backbone.pt or run id (default: the generator's)")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--seconds", type=int, default=20, help="per scenario and client count")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    url = start(args)
    results = []
    try:
        for body in ({"weights": [0.5, 0.5]}, {"weights": [0.5, 0.5], "history": [1, 2, 3]}):  # warm both paths
            path = "/v1/recommendations" if "history" in body else "/v1/adapters"
            requests.post(url + path, json=body, timeout=120).raise_for_status()
        with tempfile.TemporaryDirectory() as tmp:
            for clients in map(int, args.clients.split(",")):
                for scenario, user in SCENARIOS.items():
                    before = cache_counts(url)
                    stats = locust(url, user, clients, args.seconds, Path(tmp))
                    after = cache_counts(url)
                    results.append({"scenario": scenario, "clients": clients, **stats,
                                    **{k: after[k] - before[k] for k in after}})
                    print(json.dumps(results[-1]), flush=True)
    finally:
        from ray import serve

        serve.shutdown()
    floor = {r["clients"]: r["requests_per_s"] for r in results if r["scenario"] == "floor"}
    print("\n| clients | scenario | req/s | share of the floor (target) | p50 ms | p99 ms | p99/p50 | failures | "
          "cache hits / misses |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        share = r["requests_per_s"] / floor[r["clients"]] if floor.get(r["clients"]) else float("nan")
        target = f" (≥ {TARGETS[r['scenario']]:.0%})" if r["scenario"] in TARGETS else ""
        r["share_of_floor"] = round(share, 3)
        print(f"| {r['clients']} | {r['scenario']} | {r['requests_per_s']} | {share:.0%}{target} | {r['p50_ms']:g} | "
              f"{r['p99_ms']:g} | {r['p99_ms'] / max(r['p50_ms'], 1e-9):.1f} | {r['failures']} | "
              f"{r['hits']} / {r['misses']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""Loopback load test of `POST /v1/adapters`: throughput and latency for cache hits vs misses.

    python benchmarks/bench_serve.py --checkpoint dit.pt --backbone backbone.pt [--sampler dpm] [--steps 50] \
        [--dtype bfloat16] [--requests 200] [--concurrency 8] [--time-limit 30] [--select 16 --select-users 256] \
        [--num-cpus 2]
    python benchmarks/bench_serve.py --url http://127.0.0.1:8000      # a running `padirec serve`

Two phases, each a fixed number of requests from `--concurrency` threads, cut off at half of
`--time-limit` (at most 30 s in all): "hit" sends one w over and over (after one warm-up request),
"miss" sends a fresh w every request (w_acc drawn without replacement from the 10^precision + 1
values the cache can tell apart, so that only a server that already saw them answers from cache;
the measured cached fraction is reported). Requests still unanswered at a phase's deadline are
abandoned and counted as cut off (the server still finishes them). Prints a Markdown table and the
same figures as JSON. With `--checkpoint` it starts a local Ray cluster and the app on a free
loopback port itself and shuts them down afterwards. Only loopback addresses are accepted.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import numpy as np
import requests

from padirec.diffusion.sampling import DTYPES, STEPPED

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MAX_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(args: argparse.Namespace) -> str:
    import ray
    from ray import serve

    from padirec.serving.app import APP_NAME, build_app

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"checkpoint": args.checkpoint, "backbone": args.backbone, "sampler": args.sampler,
                         "steps": args.steps, "dtype": args.dtype,
                         "max_batch_size": args.max_batch_size, "batch_wait_timeout_s": args.batch_wait_timeout_s,
                         "cache_size": args.cache_size, "precision": args.precision, "select": args.select,
                         "select_users": args.select_users, "data_dir": args.data_dir,
                         "num_cpus": args.num_cpus}), name=APP_NAME)
    return f"http://127.0.0.1:{port}"


def stop_app() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def run_phase(url: str, bodies: list[dict], concurrency: int, seconds: float) -> dict:
    """Send `bodies` from `concurrency` threads until done or `seconds` have passed."""
    lock = threading.Lock()
    queue = iter(bodies)
    latencies, cached, errors, timeouts = [], [], [], []
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        session = requests.Session()
        while time.perf_counter() < deadline:
            with lock:
                body = next(queue, None)
            if body is None:
                return
            started = time.perf_counter()
            try:  # a request still running at the deadline is abandoned and counted as a timeout
                response = session.post(url + "/v1/adapters", json=body, timeout=max(deadline - started, 0.5))
                ok = response.status_code == 200
                hit = ok and response.json()["cached"]
            except requests.Timeout:
                with lock:
                    timeouts.append(body)
                return
            except requests.RequestException as err:
                ok, hit, response = False, False, err
            elapsed = time.perf_counter() - started
            with lock:
                if ok:
                    latencies.append(elapsed)
                    cached.append(hit)
                else:
                    errors.append(str(getattr(response, "status_code", response)))

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"requests": len(latencies), "errors": len(errors), "timeouts": len(timeouts), "seconds": round(wall, 3),
            "cached_fraction": round(float(np.mean(cached)), 3) if cached else 0.0,
            "requests_per_s": round(len(latencies) / wall, 2) if wall else 0.0,
            "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
            "mean_ms": round(float(ms.mean()), 2) if len(ms) else None,
            "error_samples": errors[:3]}


def markdown(results: dict, concurrency: int) -> str:
    lines = [f"| `/v1/adapters` ({concurrency} threads) | answered | errors | cut off at the time limit | cached "
             "| req/s | p50 ms | p99 ms |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['requests']} | {r['errors']} | {r['timeouts']} | {r['cached_fraction']:.0%} | "
                     f"{r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="dit.pt, run id or models:/ URI: start the app here")
    source.add_argument("--url", help="a running server on this machine, e.g. http://127.0.0.1:8000")
    parser.add_argument("--backbone", help="backbone.pt or run id (with --checkpoint; default: the generator's)")
    parser.add_argument("--requests", type=int, default=200, help="requests per phase")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--time-limit", type=float, default=30.0, help=f"seconds for both phases (<= {MAX_SECONDS})")
    parser.add_argument("--sampler", choices=list(STEPPED), default="ddim", help="(with --checkpoint)")
    parser.add_argument("--steps", type=int, default=50, help="ddim or dpm steps (with --checkpoint)")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32", help="(with --checkpoint)")
    parser.add_argument("--select", type=int, default=0, help="best-of-N samples per w (with --checkpoint)")
    parser.add_argument("--select-users", type=int, default=256, help="validation users best-of-N scores on")
    parser.add_argument("--data-dir", help="where the backbone's dataset is (with --select; default: its own path)")
    parser.add_argument("--num-cpus", type=float, default=1.0, help="CPUs (and torch threads) of the generator replica")
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--batch-wait-timeout-s", type=float, default=0.01)
    parser.add_argument("--cache-size", type=int, default=1024)
    parser.add_argument("--precision", type=int, default=3, help="the server's rounding (to pick distinct w)")
    parser.add_argument("--seed", type=int, default=0, help="which fresh w the miss phase draws")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be >= 1")
    seconds = min(max(args.time_limit, 1.0), MAX_SECONDS)
    if args.url and urlparse(args.url).hostname not in LOOPBACK:
        parser.error(f"--url must be a loopback address ({', '.join(sorted(LOOPBACK))})")

    url = args.url.rstrip("/") if args.url else start_app(args)
    try:
        health = requests.get(url + "/healthz", timeout=60).json()
        grid = 10**args.precision
        fresh = np.random.default_rng(args.seed).permutation(grid + 1)[: args.requests] / grid
        repeat = {"weights": [0.5, 0.5]}
        warm = requests.post(url + "/v1/adapters", json=repeat, timeout=60)
        warm.raise_for_status()
        results = {
            "hit (same w)": run_phase(url, [repeat] * args.requests, args.concurrency, seconds / 2),
            "miss (fresh w)": run_phase(url, [{"weights": [float(a), float(1 - a)]} for a in fresh],
                                        args.concurrency, seconds / 2),
        }
        after = requests.get(url + "/healthz", timeout=60).json()
    finally:
        if not args.url:
            stop_app()
    report = {"url": url, "concurrency": args.concurrency, "requests_per_phase": args.requests,
              "generator": health["generator"], "results": results, "cache_after": after["cache"]}
    print(markdown(results, args.concurrency))
    print()
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()

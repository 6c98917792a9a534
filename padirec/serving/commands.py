"""`padirec serve`: the generation API (`padirec.serving.app`) on a local Ray cluster or the one at RAY_ADDRESS."""

from __future__ import annotations

import argparse
import json
import os
import time

DEFAULT_MODEL = "models:/padirec-dit@champion"  # = padirec.serving.app.DEFAULT_MODEL (not imported: no Ray here)


def add_commands(commands) -> None:
    """Add `serve` to the `padirec` subparsers (`build_parser`'s `add_subparsers`)."""
    serve = commands.add_parser(
        "serve", help="serve generated adapters and recommendations over HTTP (Ray Serve)",
        description="Start (or join, with RAY_ADDRESS) a Ray cluster and run the PaDiRec Serve application: "
                    "POST /v1/adapters, POST /v1/recommendations, GET /healthz, /docs. Blocks until Ctrl-C "
                    "unless --no-block.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    serve.add_argument("--model", default=DEFAULT_MODEL,
                       help="generator: models:/name@alias, models:/name/version, a training run id or a dit.pt path")
    serve.add_argument("--backbone", help="backbone.pt path or run id (default: the generator's backbone run)")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP host (0.0.0.0 to listen on all interfaces)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--cache-size", type=int, default=1024, help="adapters cached per generator replica")
    serve.add_argument("--precision", type=int, default=3, help="decimals w is rounded to (cache key)")
    serve.add_argument("--sampler", choices=["ddim", "ddpm"], default="ddim")
    serve.add_argument("--steps", type=int, default=50, help="ddim steps")
    serve.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance gamma")
    serve.add_argument("--seed", type=int, default=0, help="initial-noise seed (one adapter per w)")
    serve.add_argument("--num-replicas", type=int, default=1, help="generator and recommender replicas")
    serve.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per generator replica")
    serve.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per generator replica (fractions allowed)")
    serve.add_argument("--max-batch-size", type=int, default=16)
    serve.add_argument("--batch-wait-timeout-s", type=float, default=0.01)
    serve.add_argument("--max-history", type=int, default=200, help="longest accepted history")
    block = serve.add_mutually_exclusive_group()
    block.add_argument("--blocking", dest="blocking", action="store_true", default=True,
                       help="keep serving until Ctrl-C (default)")
    block.add_argument("--no-block", dest="blocking", action="store_false",
                       help="return once the app is up (it keeps running only on a cluster that outlives this "
                            "process, i.e. with RAY_ADDRESS)")
    serve.set_defaults(func=cmd_serve)


def app_args(args: argparse.Namespace) -> dict:
    """`build_app`'s arguments from the flags."""
    return {"checkpoint": args.model, "backbone": args.backbone, "cache_size": args.cache_size,
            "precision": args.precision, "sampler": args.sampler, "steps": args.steps, "guidance": args.guidance,
            "seed": args.seed, "num_replicas": args.num_replicas, "num_cpus": args.num_cpus,
            "num_gpus": args.num_gpus, "max_batch_size": args.max_batch_size,
            "batch_wait_timeout_s": args.batch_wait_timeout_s, "max_history": args.max_history}


def examples(url: str) -> list[str]:
    return [
        f"curl -s {url}/healthz",
        f"curl -s -X POST {url}/v1/adapters -H 'Content-Type: application/json' "
        "-d '{\"weights\": {\"accuracy\": 0.3, \"diversity\": 0.7}}'",
        f"curl -s -X POST {url}/v1/recommendations -H 'Content-Type: application/json' "
        "-d '{\"history\": [1, 2, 3], \"weights\": [0.8, 0.2], \"k\": 10}'",
        f"open {url}/docs  (OpenAPI schema: {url}/openapi.json)",
    ]


def cmd_serve(args: argparse.Namespace) -> dict:
    """Start the app; block until Ctrl-C (then take it down) unless `--no-block`. Returns the URL and app name."""
    import ray
    from ray import serve

    from padirec.serving.app import APP_NAME, build_app

    application = build_app(app_args(args))  # validates the arguments before Ray starts
    joined = bool(os.environ.get("RAY_ADDRESS"))
    started_ray = False
    if not ray.is_initialized():
        ray.init()  # joins RAY_ADDRESS if set, else starts a local cluster
        started_ray = True
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{host}:{args.port}"
    summary = {"url": url, "app": APP_NAME, "model": args.model}
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(application, name=APP_NAME, route_prefix="/")
        where = f"Ray cluster {os.environ['RAY_ADDRESS']}" if joined else "local Ray"
        print(f"PaDiRec serving {args.model} at {url} ({where})")
        print("\n".join(examples(url)), flush=True)
        if not args.blocking:
            return summary
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
    finally:
        if args.blocking:  # Ctrl-C (or a failed start): take the app down again
            try:
                if joined or not started_ray:
                    serve.delete(APP_NAME)
                else:
                    serve.shutdown()
                    ray.shutdown()
            except Exception as err:  # noqa: BLE001 - do not hide the error that got us here
                print(f"padirec serve: cleanup failed: {err}", flush=True)
    print(json.dumps(summary))
    return summary

"""The serving stage: the PaDiRec Serve application (`serving.app`) on a local Ray cluster or the one at
RAY_ADDRESS. `padirec serve`, `pipeline --deploy` and `jobs/deploy.py` call `serve`."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from dataclasses import dataclass

import ray
from ray import serve as ray_serve

from padirec.serving.app import APP_NAME, AppArgs, build_app, check_against_model


@dataclass
class ServeOptions:
    """Where the HTTP proxy listens and whether `serve` blocks."""

    host: str = "127.0.0.1"  # HTTP host (0.0.0.0 to listen on all interfaces)
    port: int = 8000
    blocking: bool = True  # serve until Ctrl-C; --no-block returns once up (the app outlives it only with RAY_ADDRESS)
    # Prometheus endpoint of a local Ray cluster (Ray Serve's ray_serve_* series and PaDiRec's padirec_*); 0 = a
    # free port, printed at start; a joined cluster exports on its own `ray start --metrics-export-port`
    metrics_port: int = 0


@dataclass
class ServeResult:
    url: str
    app: str
    model: str


def examples(url: str) -> list[str]:
    """curl lines a user can paste against the running app."""
    return [
        f"curl -s {url}/healthz",
        f"curl -s -X POST {url}/v1/adapters -H 'Content-Type: application/json' "
        "-d '{\"weights\": {\"accuracy\": 0.3, \"diversity\": 0.7}}'",
        f"curl -s -X POST {url}/v1/recommendations -H 'Content-Type: application/json' "
        "-d '{\"history\": [1, 2, 3], \"weights\": [0.8, 0.2], \"k\": 10}'",
        f"curl -s '{url}/v1/adapters?weights=0.3,0.7&encoding=base64'",
        f"open {url}/  (the control page; OpenAPI: {url}/docs, {url}/openapi.json)",
    ]


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _disarm_abort_alarm() -> None:
    """Ray's native failure-signal handler sees SIGTERM first and arms a 3 s SIGALRM abort before chaining to a
    Python handler (ray-project/ray#64830); a clean shutdown takes longer, so cancel it."""
    signal.alarm(0)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)


def metrics_port_for(port: int) -> int:
    """`port` if it is free, a free one for 0; a taken port is a clear error here, before Ray's node times out on
    it (30 s and "the current node timed out during startup")."""
    with socket.socket() as probe:
        try:
            probe.bind(("", port))
        except OSError as err:
            raise ValueError(f"metrics port {port} is in use ({err.strerror}): pass --metrics-port with a free "
                             "port, or 0 for any") from err
        return probe.getsockname()[1]


def serve(app: AppArgs, options: ServeOptions = ServeOptions()) -> ServeResult:
    """Start the app; block until Ctrl-C or SIGTERM (then take it down and return) unless `options.blocking` is
    False."""
    application = build_app(app.model_dump())  # validates the arguments before Ray starts
    check_against_model(app)
    joined = bool(os.environ.get("RAY_ADDRESS"))
    handles_signals = threading.current_thread() is threading.main_thread()  # Python allows no other thread
    started_ray = False
    if not ray.is_initialized():
        # joins RAY_ADDRESS if set, else starts a local cluster that exports metrics on the port asked for
        local = {} if joined else {"_metrics_export_port": metrics_port_for(options.metrics_port)}
        ray.init(**local)
        started_ray = True
    host = "127.0.0.1" if options.host in ("0.0.0.0", "::") else options.host
    result = ServeResult(f"http://{host}:{options.port}", APP_NAME, app.checkpoint)
    try:
        ray_serve.start(http_options={"host": options.host, "port": options.port})
        ray_serve.run(application, name=APP_NAME, route_prefix="/")
        where = f"Ray cluster {os.environ['RAY_ADDRESS']}" if joined else "local Ray"
        print(f"PaDiRec serving {app.checkpoint} at {result.url} ({where})")
        if started_ray and not joined:
            print(f"Prometheus metrics: http://{host}:{local['_metrics_export_port']}/metrics")
        print("\n".join(examples(result.url)), flush=True)
        if not options.blocking:
            return result
        if handles_signals:
            signal.signal(signal.SIGTERM, _interrupt)  # `kill`, a container stop: the same clean exit as Ctrl-C
        while True:
            time.sleep(1)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C; SIGTERM (ours, or Ray's handler: sys.exit)
        if handles_signals:
            _disarm_abort_alarm()
        print("\nstopping", flush=True)
    finally:
        if options.blocking:  # Ctrl-C (or a failed start): take the app down again
            try:
                if joined or not started_ray:
                    ray_serve.delete(APP_NAME)
                else:
                    ray_serve.shutdown()
                    ray.shutdown()
            except Exception as err:  # noqa: BLE001 - do not hide the error that got us here
                print(f"padirec serve: cleanup failed: {err}", flush=True)
    return result

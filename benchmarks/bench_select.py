"""In-process cost of serving best-of-N for one fresh w: sampling the candidates vs scoring them.

    MLFLOW_TRACKING_URI=... python benchmarks/bench_select.py --checkpoint models:/padirec-dit/1 \\
        [--sampler dpm] --steps 3 [--dtype bfloat16] --select 16 --select-users 256 \\
        --data-dir /work/shared/data/ml-100k [--threads 2] [--timing-thread other]

Loads the generator and its selection exactly as `padirec serve --select` does (`load_served_generator`), warms
up, then times `repeats` single-w calls of each half. Prints the means in ms as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from padirec.diffusion.sampling import DTYPES, STEPPED
from padirec.serving.served import GenerationSettings, load_served_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="dit.pt, run id or models:/ URI")
    parser.add_argument("--backbone", help="backbone.pt or run id (default: the generator's)")
    parser.add_argument("--data-dir", help="where the backbone's dataset is (default: its own path)")
    parser.add_argument("--sampler", choices=list(STEPPED), default="ddim")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("--select", type=int, default=16)
    parser.add_argument("--select-users", type=int, default=256)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--timing-thread", choices=["loading", "other"], default="loading",
                        help="time on the thread that loaded the model, or on another one (asyncio.to_thread's case)")
    args = parser.parse_args()
    if args.select < 1:
        parser.error("--select must be at least 1")
    torch.set_num_threads(args.threads)
    settings = GenerationSettings(sampler=args.sampler, steps=args.steps, select=args.select,
                                  select_users=args.select_users, dtype=args.dtype)
    best_of = load_served_generator(args.checkpoint, settings, backbone=args.backbone, data_dir=args.data_dir).best_of
    w = np.array([[0.37, 0.63]], dtype=np.float32)

    def timed() -> tuple[float, float]:
        for _ in range(3):
            best_of.adapters(w)
        start = time.perf_counter()
        for _ in range(args.repeats):
            candidates = best_of.inner.adapters(w)
        sampled = time.perf_counter()
        for _ in range(args.repeats):
            best_of.selector.per_candidate(candidates)
        scored = time.perf_counter()
        return 1e3 * (sampled - start) / args.repeats, 1e3 * (scored - sampled) / args.repeats

    if args.timing_thread == "other":
        with ThreadPoolExecutor(1) as other:
            sample_ms, score_ms = other.submit(timed).result()
    else:
        sample_ms, score_ms = timed()
    print(json.dumps({"threads": args.threads, "samples": args.select, "users": args.select_users,
                      "sampler": args.sampler, "steps": args.steps, "dtype": args.dtype, "thread": args.timing_thread,
                      "sample_ms": round(sample_ms, 1), "score_ms": round(score_ms, 1),
                      "total_ms": round(sample_ms + score_ms, 1)}))


if __name__ == "__main__":
    main()

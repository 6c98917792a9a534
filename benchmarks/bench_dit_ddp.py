"""DiT training throughput: in-process loop vs Ray Train DDP with 1 and 2 workers (samples / s).

    python benchmarks/bench_dit_ddp.py --dataset adapters.parquet [--epochs 6] [--workers 0,1,2] \
        [--dit hidden=128,depth=2,heads=4,ffn=512] [--gpu]

Each setting trains the same DiT on the gathered dataset for `--epochs` epochs and reports the
throughput of the last epoch (all workers' rows over rank 0's epoch time; the first epochs carry
start-up). Workers get 1 CPU (1 intra-op thread) each; `0` is the plain loop in this process
with `--threads` threads. On a GPU machine pass `--gpu` (1 GPU per worker, NCCL).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from padirec.diffusion.ray_train import train_dit_ray
from padirec.diffusion.train import DiTTrainConfig, train_dit


def parse_dit(text: str) -> dict:
    return {k: int(v) for k, v in (item.split("=") for item in text.split(",") if item)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="gathered adapters.parquet")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch")
    parser.add_argument("--workers", default="0,1,2", help="0 = in-process loop")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of the in-process loop")
    parser.add_argument("--dit", default="hidden=128,depth=2,heads=4,ffn=512", help="DiTConfig overrides")
    parser.add_argument("--gpu", action="store_true")
    args = parser.parse_args()

    config = DiTTrainConfig(epochs=args.epochs, batch_size=args.batch_size, prediction="v", lr=1e-3,
                            checkpoint_every=args.epochs, dit=parse_dit(args.dit))
    rows = []
    for workers in (int(w) for w in args.workers.split(",")):
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as storage:
            if workers == 0:
                torch.set_num_threads(args.threads)
                config.device = "cuda" if args.gpu else "cpu"
                metrics = train_dit(args.dataset, config, output_dir=storage)["metrics"]
            else:
                metrics = train_dit_ray(args.dataset, config, num_workers=workers, use_gpu=args.gpu,
                                        storage_path=storage)["metrics"]
        rows.append({"workers": workers, "samples_per_s": metrics["samples_per_s"],
                     "epoch_seconds": metrics["epoch_seconds"], "wall_s": time.perf_counter() - started})
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nDiT {args.dit}, global batch {args.batch_size}, {args.epochs} epochs\n"
          "| setting | samples / s (last epoch) | epoch s | wall s (incl. start-up) |\n| --- | --- | --- | --- |")
    for r in rows:
        name = (f"in-process, {args.threads} thread(s)" if r["workers"] == 0
                else f"Ray Train DDP, {r['workers']} worker(s)")
        print(f"| {name} | {r['samples_per_s']:.0f} | {r['epoch_seconds']:.2f} | {r['wall_s']:.0f} |")


if __name__ == "__main__":
    main()

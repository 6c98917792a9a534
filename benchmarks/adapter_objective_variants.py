"""Adapter-objective variants on one frozen backbone: test NDCG@10 / α-NDCG@10 per kept epoch.

    python benchmarks/adapter_objective_variants.py BACKBONE.pt "dict(epochs=6, keep_last=4, diversity_topk=10)"

The second argument is `AdapterConfig` overrides (a Python dict literal). Weights: w_acc 0, 0.1, 0.5, 1.
"""

import sys
import time

import numpy as np
import torch

from padirec.config import DataSpec, load_data
from padirec.training import AdapterConfig, load_backbone, train_adapters

torch.set_num_threads(1)
backbone, extra = load_backbone(sys.argv[1])
data = load_data(DataSpec(**extra["data"]))
overrides = eval(sys.argv[2], {"__builtins__": {}, "dict": dict})  # a literal typed on the command line
weights = np.array([[0, 1], [0.1, 0.9], [0.5, 0.5], [1, 0]], dtype=np.float32)
started = time.time()
result = train_adapters(backbone, data, weights, AdapterConfig(**overrides), progress=False, eval_splits=("test",))
for e, epoch in enumerate(result.epochs):
    print(overrides, epoch, np.round(result.metrics["test_ndcg10"][e], 4),
          np.round(result.metrics["test_alpha_ndcg10"][e], 4), flush=True)
print(f"{time.time() - started:.0f} s")

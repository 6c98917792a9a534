"""`ray job submit --working-dir . -- python jobs/train_dit.py --sweep SWEEP_RUN_ID [--workers 2] [--config cfg.yaml]`.

Thin entrypoint: the same arguments as `padirec train-dit` (Ray Train DDP, then MLflow registration);
connects to the cluster the job runs on (`RAY_ADDRESS`).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # padirec/ from the uploaded working dir

from padirec.cli import main

if __name__ == "__main__":
    main(["train-dit", *sys.argv[1:]])

"""`ray job submit --working-dir . -- python jobs/evaluate.py --sweep SWEEP_RUN_ID [--model REF] [--noise-std 0.01]`.

Thin entrypoint: the same arguments as `padirec evaluate` (the controllability report, one MLflow run).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # padirec/ from the uploaded working dir

from padirec.cli import main

if __name__ == "__main__":
    main(["evaluate", *sys.argv[1:]])

"""`ray job submit --working-dir . -- python jobs/sweep_adapters.py --backbone-run RUN [--config cfg.yaml]`.

Thin entrypoint: the same arguments as `padirec sweep`; connects to the cluster the job runs on.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # padirec/ from the uploaded working dir

from padirec.cli import main

if __name__ == "__main__":
    main(["sweep", *sys.argv[1:]])

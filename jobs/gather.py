"""`ray job submit --working-dir . -- python jobs/gather.py --sweep SWEEP_RUN`: same as `padirec gather`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # padirec/ from the uploaded working dir

from padirec.cli import main

if __name__ == "__main__":
    main(["gather", *sys.argv[1:]])

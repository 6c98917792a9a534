"""`ray job submit --working-dir . -- python jobs/pipeline.py --config cfg.yaml`: same as `padirec pipeline`."""

import sys

from padirec.cli import main

if __name__ == "__main__":
    main(["pipeline", *sys.argv[1:]])

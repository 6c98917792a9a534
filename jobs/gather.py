"""`ray job submit --working-dir . -- python jobs/gather.py --sweep SWEEP_RUN`: same as `padirec gather`."""

import sys

from padirec.cli import main

if __name__ == "__main__":
    main(["gather", *sys.argv[1:]])

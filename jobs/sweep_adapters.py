"""`ray job submit --working-dir . -- python jobs/sweep_adapters.py --backbone-run RUN [--config cfg.yaml]`.

Thin entrypoint: the same arguments as `padirec sweep`; connects to the cluster the job runs on.
"""

import sys

from padirec.cli import main

if __name__ == "__main__":
    main(["sweep", *sys.argv[1:]])

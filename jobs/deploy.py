"""`ray job submit --working-dir . -- python jobs/deploy.py [--model models:/padirec-dit@champion] [--port 8000]`.

Deploys the generation API (`padirec serve`, same flags) onto the running cluster and returns: the Serve
application outlives this job. Listens on 0.0.0.0 unless `--host` says otherwise; `--no-block` is implied.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # padirec/ from the uploaded working dir

from padirec.cli import main

if __name__ == "__main__":
    if not os.environ.get("RAY_ADDRESS"):  # a local cluster would die with this process, and the app with it
        raise SystemExit("jobs/deploy.py deploys onto a running Ray cluster: submit it with `ray job submit` "
                         "or set RAY_ADDRESS")
    main(["serve", "--host", "0.0.0.0", *sys.argv[1:], "--no-block"])

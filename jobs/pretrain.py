"""`ray job submit --working-dir . -- python jobs/pretrain.py --dataset ml-100k` (= `padirec pretrain`)."""

import sys

from padirec.cli import main

if __name__ == "__main__":
    main(["pretrain", *sys.argv[1:]])

"""Ray Jobs entrypoint for generator training; takes the flags of `padirec train-dit`.

    ray job submit --working-dir . -- python jobs/train_dit.py --sweep SWEEP_RUN_ID --workers 2 --config cfg.yaml
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the uploaded working dir holds padirec/

from padirec.diffusion.commands import add_commands  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="train_dit.py")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train-dit", *(sys.argv[1:] if argv is None else argv)])
    args.func(args)


if __name__ == "__main__":
    main()

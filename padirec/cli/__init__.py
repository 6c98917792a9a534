"""The command-line layer: parse flags (derived from the config dataclasses), build a typed config, call one
stage function, print. Nothing outside this package imports it."""

from padirec.cli.main import build_parser, main

__all__ = ["build_parser", "main"]

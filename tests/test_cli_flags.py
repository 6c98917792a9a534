"""Flags derived from the config dataclasses: one default (the dataclass's), values nested by section."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Literal

import pytest

from padirec.cli import build_parser
from padirec.cli.flags import add_flags, field_comments, flag_values
from padirec.config import build
from padirec.diffusion.train import DiTTrainConfig


@dataclass
class Inner:
    width: int = 8  # hidden units


@dataclass
class Outer:
    steps: int = 3  # how many
    rate: float = 0.5
    mode: Literal["fast", "slow"] = "fast"  # pick one
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    # say more on the line above when it does not fit after the field
    verbose: bool = False
    inner: Inner = field(default_factory=Inner)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_flags(p, Outer, ["steps", "rate", "mode", "seeds", "verbose"], section="outer")
    add_flags(p, Inner, ["width"], section="outer.inner", flags={"width": "--inner-width"})
    return p


def test_flags_carry_the_dataclass_defaults_only_in_their_help():
    p = parser()
    assert flag_values(p.parse_args([])) == {}  # a flag left out decides nothing: YAML or the dataclass does
    text = p.format_help()
    assert "how many (default: 3)" in text and "pick one (default: fast)" in text and "(default: 0,1)" in text
    assert "hidden units (default: 8)" in text
    assert field_comments(Outer)["mode"] == "pick one"
    assert field_comments(Outer)["verbose"] == "say more on the line above when it does not fit after the field"
    assert field_comments(Outer)["rate"] == ""  # the comment above belongs to the field it sits on


def test_given_flags_nest_by_section_and_build_the_config():
    args = parser().parse_args(["--steps", "7", "--mode", "slow", "--seeds", "4,5", "--verbose", "--inner-width",
                                "16"])
    values = flag_values(args)
    assert values == {"outer": {"steps": 7, "mode": "slow", "seeds": [4, 5], "verbose": True, "inner": {"width": 16}}}
    assert build(Outer, values["outer"]) == Outer(steps=7, mode="slow", seeds=[4, 5], verbose=True,
                                                  inner=Inner(width=16))


@pytest.mark.parametrize("argv", [["--mode", "medium"], ["--steps", "x"], ["--seeds", "1,a"]])
def test_bad_flag_values_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(argv)
    assert exit_info.value.code == 2 and "error" in capsys.readouterr().err


def test_unknown_fields_and_sections_are_refused():
    with pytest.raises(KeyError, match="no field 'nope'"):
        add_flags(argparse.ArgumentParser(), Outer, ["nope"])
    with pytest.raises(TypeError, match="is a section"):
        add_flags(argparse.ArgumentParser(), Outer, ["inner"])


def test_the_padirec_help_shows_the_library_defaults():
    """`padirec train-dit --help` reads its defaults from DiTTrainConfig: change one there, the help follows."""
    sub = build_parser()._subparsers._group_actions[0].choices["train-dit"]
    text = sub.format_help()
    assert f"(default: {DiTTrainConfig().epochs})" in text and f"(default: {DiTTrainConfig().lr})" in text
    assert "{eps,v,x0}" in text  # the prediction field's Literal

"""The variant names of `benchmarks/retrain_curve_variants.py` and `simplex_variants.py`: a BENCHMARKS column is
only as right as the config its name parses to."""

import sys
from pathlib import Path

import pytest

from padirec.training import AdapterConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from retrain_curve_variants import variant_config  # noqa: E402


@pytest.mark.parametrize("name, expected", [
    ("tchebycheff:last:10", ("range", "tchebycheff", "last", 10)),  # alone: range + Tchebycheff (once parsed linear)
    ("range", ("range", "linear", "last", 0)),
    ("even+tchebycheff:best", ("even", "tchebycheff", "best", 0)),
    ("none:last:10", ("none", "linear", "last", 10)),
])
def test_variant_names_parse_to_the_config_they_name(name, expected):
    config = variant_config(name, AdapterConfig())
    assert (config.objective_scale, config.scalarization, config.keep, config.diversity_topk) == expected
    assert variant_config(f"{name}@map_seeds=2@augmentation=0.05", AdapterConfig()).map_seeds == 2

"""The variant names of `benchmarks/retrain_curve_variants.py` and `simplex_variants.py`: a BENCHMARKS column is
only as right as the config its name parses to."""

import sys
from pathlib import Path

import numpy as np
import pytest

from padirec.training import AdapterConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from retrain_curve_variants import above_text, variant_config  # noqa: E402


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

    assert variant_config(f"{name}@accuracy_loss=backbone", AdapterConfig()).accuracy_loss == "backbone"


def test_rerankers_count_only_the_weights_where_both_metrics_beat_the_curve():
    curve = np.array([[0.1, 0.8], [0.2, 0.6], [0.3, 0.4]])
    beats = {"MMR": np.array([[0.2, 0.9], [0.3, 0.5], [0.4, 0.5]]), "DPP": curve.copy()}  # DPP ties: not above
    assert above_text(curve, beats).endswith("above: MMR 2, DPP 0")

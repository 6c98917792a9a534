"""Adapter sweep: Ray Tune over the weight grid, MLflow child runs, gathered into Parquet."""

from padirec.sweep.gather import gather
from padirec.sweep.grid import Block, example_key, pack_blocks, simplex_grid
from padirec.sweep.report import retrain_curve, sweep_report
from padirec.sweep.run import SweepConfig, load_sweep_config, run_sweep, start_sweep, train_block

__all__ = ["gather", "Block", "example_key", "pack_blocks",
           "simplex_grid", "retrain_curve", "sweep_report", "SweepConfig", "load_sweep_config", "run_sweep",
           "start_sweep", "train_block"]

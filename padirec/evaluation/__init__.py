"""Evaluation: the baselines, Avg.HV and Pearson r-a / r-d against Retrain, the controllability report."""

from padirec.evaluation.controllability import controllability_table, table_markdown

__all__ = ["controllability_table", "table_markdown"]

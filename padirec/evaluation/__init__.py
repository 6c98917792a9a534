"""Evaluation: controllability against Retrain (Avg.HV, Pearson r-a / r-d)."""

from padirec.evaluation.controllability import controllability_table, table_markdown

__all__ = ["controllability_table", "table_markdown"]

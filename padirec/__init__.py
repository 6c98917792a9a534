"""PaDiRec: controllable recommendation by generating adapter parameters with diffusion."""

__version__ = "0.1.0"

"""Data: dataset files -> `RawData` -> preprocessed leave-one-out `SequenceData` (cached as Parquet)."""

from .cache import fingerprint, load_dataset, load_sequence_data, save_sequence_data
from .dataset import Instances, PreprocessConfig, SequenceData, preprocess, sample_negatives
from .download import MOVIELENS, download_movielens
from .errors import DataError
from .raw import RawData
from .readers import (
    read_interactions_table,
    read_movielens_1m,
    read_movielens_100k,
    read_raw,
    read_rechorus,
)
from .synthetic import SyntheticConfig, make_synthetic

__all__ = [
    "DataError", "RawData", "read_movielens_100k", "read_movielens_1m", "read_rechorus",
    "read_interactions_table", "read_raw", "SyntheticConfig", "make_synthetic", "PreprocessConfig",
    "Instances", "SequenceData", "preprocess", "sample_negatives", "fingerprint", "load_dataset",
    "save_sequence_data", "load_sequence_data", "MOVIELENS", "download_movielens",
]

"""Backbones (and their checkpoint), the adapter and its per-tensor normaliser."""

from padirec.models.adapter import (
    ADAPTER_LAYOUT,
    N_PARAMS,
    N_TOKENS,
    Adapter,
    apply_adapter,
    apply_adapters,
    apply_adapters_per_row,
    from_matrix,
    from_tokens,
    init_adapter_flat,
    layout_dict,
    to_matrix,
    to_tokens,
    unflatten,
)
from padirec.models.backbones import BACKBONES, Backbone, BackboneConfig, build_backbone, load_backbone, save_backbone
from padirec.models.normalizer import ParamNormalizer

__all__ = [
    "ADAPTER_LAYOUT", "N_PARAMS", "N_TOKENS", "Adapter", "apply_adapter", "apply_adapters",
    "apply_adapters_per_row", "from_matrix", "from_tokens", "init_adapter_flat", "layout_dict",
    "to_matrix", "to_tokens", "unflatten", "BACKBONES", "Backbone", "BackboneConfig", "build_backbone",
    "load_backbone", "save_backbone", "ParamNormalizer",
]

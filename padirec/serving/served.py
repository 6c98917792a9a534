"""One served model inside a replica, as plain objects (tested without Ray): the generator side (DiT, sampler, adapter
cache) and the recommender side (frozen backbone, catalogue); and the names by which a request may pick a model.

A deployment serves its default model (`checkpoint`) and, through Ray Serve's model multiplexing, the registered
models of its allow-list; a request names one by registered name and version or alias, never by path.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from padirec.config import data_spec, load_data
from padirec.contracts.artifacts import generator_lineage, resolve_backbone_file, resolve_generator_file
from padirec.contracts.checkpoint import GeneratorCheckpoint, load_checkpoint
from padirec.contracts.names import GENERATOR_RUN_TAG, MODEL_VERSION_TAG
from padirec.diffusion.generate import best_of_n
from padirec.diffusion.generator import Generator, load_generator
from padirec.diffusion.sampling import DEFAULT_DDIM_STEPS, SamplerConfig, make_sampler
from padirec.evaluation.select import BestOf
from padirec.models import Backbone, load_backbone
from padirec.models.adapter import HIDDEN_SIZE
from padirec.serving.catalogue import Catalogue, load_catalogue
from padirec.serving.engine import AdapterCache

REGISTERED_MODEL = re.compile(r"^(?:models:/)?(?P<name>[A-Za-z0-9][\w.\-]*)(?P<version>/\d+|@[A-Za-z0-9_\-]+)$")


def registered_model_id(reference: str) -> str:
    """`models:/name/version` or `models:/name@alias` for a registered-model reference given with or without the
    `models:/` prefix; anything else (a path, a run id, `runs:/`) is an error."""
    match = REGISTERED_MODEL.match(reference.strip())
    if not match:
        raise ValueError(f"{reference[:80]!r} is not a registered model: expected NAME/VERSION or NAME@ALIAS "
                         "(e.g. padirec-dit/2, padirec-dit@champion)")
    return f"models:/{match['name']}{match['version']}"


@dataclass(frozen=True)
class GenerationSettings:
    """How every model of a deployment generates (the `AppArgs` of the generator)."""

    sampler: str = "ddim"
    steps: int = DEFAULT_DDIM_STEPS
    guidance: float = 0.0
    eta: float = 0.0
    seed: int = 0
    cache_size: int = 1024
    precision: int = 3
    select: int = 0  # > 0: best-of-N, this many samples per w scored on `select_users` validation users (14.1)
    select_users: int = 256
    dtype: str = "float32"  # "bfloat16": the DiT under autocast (`SamplerConfig.dtype`)


@dataclass(eq=False)
class ServedGenerator:
    """A loaded DiT with its sampler, its adapter cache, the generations in flight (by rounded w) and, with
    best-of-N, the selection among each w's samples (`diffusion.generate.best_of_n`, as `generate --select`)."""

    model_id: str
    generator: Generator
    sampler: SamplerConfig
    cache: AdapterCache
    info: dict
    pending: dict = field(default_factory=dict)
    best_of: BestOf | None = None


def load_selection(checkpoint: str, generator: Generator, sampler: SamplerConfig, settings: GenerationSettings,
                   backbone: str | None = None, data_dir: str | None = None) -> BestOf:
    """`generate --select`'s best-of-N for a served generator: its backbone and the validation users of the data
    the backbone records (read from `data_dir` when given)."""
    model, extra = load_serving_backbone(backbone_reference(checkpoint, backbone))
    if not extra.get("data"):
        raise ValueError(f"select={settings.select} scores samples on validation users, but the backbone of "
                         f"{checkpoint} records no dataset; serve with select=0")
    data = load_data(data_spec(extra["data"], {"path": data_dir} if data_dir else None))
    return best_of_n(generator, model, data, sampler, settings.select, settings.select_users, settings.seed)


def load_served_generator(checkpoint: str, settings: GenerationSettings, device: str = "cpu",
                          backbone: str | None = None, data_dir: str | None = None,
                          strict: bool = True) -> ServedGenerator:
    """The generator of `checkpoint`, which is also its model id (a registered model's `models:/` reference).

    With `settings.select`, a model whose selection cannot be built (no recorded dataset) is an
    error when `strict` (the deployment's default model), else served without selection, its info saying why."""
    generator = load_generator(resolve_generator_file(checkpoint), device)
    sampler = make_sampler(settings.sampler, None if settings.sampler == "ddpm" else settings.steps,
                           generator.schedule.num_steps, eta=settings.eta, guidance=settings.guidance,
                           dtype=settings.dtype)
    best_of, selection = None, None
    if settings.select:
        try:
            best_of = load_selection(checkpoint, generator, sampler, settings, backbone, data_dir)
            selection = {"samples": settings.select, "users": settings.select_users,
                         "utility_bounds": list(best_of.bounds) if best_of.bounds else None}
        except ValueError as err:
            if strict:
                raise
            selection = {"samples": 0, "reason": str(err)}
    meta = generator.metadata
    lineage = generator_lineage(checkpoint)  # run id and registered version when served from MLflow
    info = {"model": checkpoint, "checkpoint": checkpoint, "generator_run_id": lineage.get(GENERATOR_RUN_TAG),
            "model_version": lineage.get(MODEL_VERSION_TAG), "epoch": meta.get("epoch"),
            "dataset_sha256": meta.get("dataset_sha256"), "backbone_run_id": meta.get("backbone_run_id"),
            "sweep_run_id": meta.get("sweep_run_id"), "cond_dim": generator.cond_dim,
            "objectives": generator.objectives, "sampler": asdict(sampler), "seed": settings.seed,
            "device": device, "precision": settings.precision, "select": selection}
    return ServedGenerator(checkpoint, generator, sampler, AdapterCache(settings.cache_size, settings.precision), info,
                           best_of=best_of)


def backbone_reference(checkpoint: str, backbone: str | None = None) -> str:
    """The backbone to serve: `backbone` if given, else the generator checkpoint's `backbone_run_id`."""
    return backbone or _recorded_backbone(checkpoint, load_checkpoint(resolve_generator_file(checkpoint)))


def _recorded_backbone(checkpoint: str, recorded: GeneratorCheckpoint) -> str:
    if not recorded.backbone_run_id:
        raise ValueError(f"the generator {checkpoint} names no backbone run (its dataset had no backbone_run_id); "
                         "pass backbone=PATH_OR_RUN_ID")
    return recorded.backbone_run_id


def load_serving_backbone(reference: str, device: str = "cpu") -> tuple[Backbone, dict]:
    """A frozen backbone from a `backbone.pt` path, an MLflow run id or a `runs:/` URI, and what it records
    (its `data` spec among it)."""
    backbone, extra = load_backbone(resolve_backbone_file(reference), device)
    if backbone.config.hidden != HIDDEN_SIZE:
        raise ValueError(f"backbone hidden size {backbone.config.hidden} != the adapter's {HIDDEN_SIZE}")
    return backbone, extra


@dataclass(eq=False)
class ServedBackbone:
    """The frozen backbone a generator's adapters apply to, and the catalogue of its data."""

    model_id: str
    backbone: Backbone
    catalogue: Catalogue
    info: dict


def load_served_backbone(checkpoint: str, backbone: str | None = None, data_dir: str | None = None) -> ServedBackbone:
    """The backbone of `checkpoint` (or `backbone`), with the catalogue of the data it was trained on (read from
    `data_dir` when given: the same dataset in another place on the serving machine), which scores a user's list by
    the generator's objectives."""
    recorded = load_checkpoint(resolve_generator_file(checkpoint))  # its backbone and objectives
    reference = backbone or _recorded_backbone(checkpoint, recorded)
    model, extra = load_serving_backbone(reference)
    run_id = generator_lineage(checkpoint).get(GENERATOR_RUN_TAG)
    catalogue = load_catalogue(extra.get("data"), model.config.n_items, run_id,
                               {"path": data_dir} if data_dir else None, recorded.objective_names())
    config = model.config
    info = {"model": checkpoint, "backbone": reference, "name": config.name, "n_items": config.n_items,
            "max_len": config.max_len, "hidden": config.hidden}
    return ServedBackbone(checkpoint, model, catalogue, info)

"""Every name one stage writes and another reads: MLflow tags and stage names, artifact paths, the registry.

Stages import these instead of spelling them; `docs/architecture.md` lists who writes and who reads each.
"""

from __future__ import annotations

# -- MLflow tags ---------------------------------------------------------------------------------------------
STAGE_TAG = "padirec.stage"  # what a run is: one of STAGES
EXAMPLE_KEY_TAG = "padirec.example_key"  # a sweep child run's (w, seed, epoch) key: what makes resume exact
ADAPTER_EXPERIMENT_TAG = "padirec.adapter_experiment_id"  # on a sweep run: the experiment its adapter runs are in
ADAPTER_SHA256_TAG = "padirec.adapter_sha256"  # digest of the run's adapter.npy, checked when it is read
BACKBONE_SHA256_TAG = "padirec.backbone_sha256"  # digest of the run's backbone/backbone.pt, checked when downloaded
CHECKPOINT_SHA256_TAG = "padirec.checkpoint_sha256"  # digest of the run's checkpoint/dit.pt, checked when downloaded
DATASET_SHA256_TAG = "padirec.dataset_sha256"  # a gathered dataset: on its sweep run and on generators trained on it
SWEEP_RUN_TAG = "padirec.sweep_run_id"  # lineage: the sweep a dataset, generator or report came from
BACKBONE_RUN_TAG = "padirec.backbone_run_id"  # lineage: the backbone an adapter or generator belongs to
GENERATOR_RUN_TAG = "padirec.generator_run_id"  # lineage: the generator run a report (or deployment) used
MODEL_VERSION_TAG = "padirec.model_version"  # lineage: the registered "name/version" a report used; search by it
BACKBONE_CONVERGED_TAG = "padirec.backbone_converged"  # "false": still improving at the epoch cap
OBJECTIVES_TAG = "padirec.objectives"  # on sweep and generator runs: the objectives' names, comma-separated
RAY_TRAIN_NAME_TAG = "padirec.ray_train_name"  # the Ray Train run name of a generator (reuse it to resume)
LEGACY_TAGS = {  # written by releases before these names; read as a fallback so old stores stay usable
    ADAPTER_SHA256_TAG: "adapter_sha256", DATASET_SHA256_TAG: "dataset_sha256", SWEEP_RUN_TAG: "sweep_run_id",
    BACKBONE_RUN_TAG: "backbone_run_id",
}

STAGE_BACKBONE = "backbone"
STAGE_ADAPTER = "adapter"
STAGE_SWEEP = "sweep"
STAGE_GENERATOR = "generator"
STAGE_GENERATE = "generate"
STAGE_REPORT = "report"

# A sweep in experiment E logs its adapter runs (hundreds) to experiment "E-adapters", as children of the sweep run:
# in E itself they would fill the MLflow UI's first pages (runs are listed newest first, 100 at a time, children
# too) and bury the backbone, sweep, generator and report runs behind "Load more".
ADAPTER_EXPERIMENT_SUFFIX = "-adapters"

# -- artifact paths inside a run ------------------------------------------------------------------------------
BACKBONE_DIR, BACKBONE_FILE = "backbone", "backbone.pt"
ADAPTER_DIR, ADAPTER_FILE = "adapter", "adapter.npy"
DATASET_DIR, DATASET_FILE, MANIFEST_FILE = "dataset", "adapters.parquet", "manifest.json"
SWEEP_CONFIG_FILE, GRID_FILE = "sweep_config.json", "grid.json"
CHECKPOINT_DIR, CHECKPOINT_FILE = "checkpoint", "dit.pt"  # a generator run's checkpoint
ALIGNED_FILE = "dit-aligned.pt"  # beside dit.pt after preference alignment; a run directory resolves to it first
MODEL_ARTIFACT = "generator"  # the logged pyfunc model's name inside a generator run
REPORT_DIR, CURVES_FILE = "report", "curves.csv"  # a report run's files; curves.csv: method, w_acc, ndcg10, ...

BACKBONE_ARTIFACT = f"{BACKBONE_DIR}/{BACKBONE_FILE}"
ADAPTER_ARTIFACT = f"{ADAPTER_DIR}/{ADAPTER_FILE}"
DATASET_ARTIFACT = f"{DATASET_DIR}/{DATASET_FILE}"
MANIFEST_ARTIFACT = f"{DATASET_DIR}/{MANIFEST_FILE}"
CHECKPOINT_ARTIFACT = f"{CHECKPOINT_DIR}/{CHECKPOINT_FILE}"
CURVES_ARTIFACT = f"{REPORT_DIR}/{CURVES_FILE}"  # read by the serving control page

# -- model registry -------------------------------------------------------------------------------------------
MODEL_NAME = "padirec-dit"
ALIAS = "champion"
DEFAULT_MODEL_URI = f"models:/{MODEL_NAME}@{ALIAS}"


def tag(tags: dict, key: str, default: str = "") -> str:
    """A tag's value, falling back to its pre-rename key (`LEGACY_TAGS`)."""
    if key in tags:
        return tags[key]
    return tags.get(LEGACY_TAGS.get(key, key), default)

"""The generator checkpoint (`dit.pt`): what generator training writes and generation, serving, evaluation and
the registry read. One file that `torch.load(..., weights_only=True)` opens (plain types and tensors only)."""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

import torch

FORMAT = "padirec.generator"
VERSION = 1  # raise it when a field changes meaning; `load_checkpoint` refuses other versions with a clear error


@dataclass
class GeneratorCheckpoint:
    """Configs, the dataset's normaliser, model / EMA / optimizer states, epochs completed, lineage."""

    dit_config: dict  # DiTConfig as a dict
    schedule_config: dict  # ScheduleConfig
    train_config: dict  # GeneratorTrainConfig (nested sections as dicts)
    normalizer: dict  # ParamNormalizer.to_dict() of the training dataset
    model: dict  # state dict of the denoiser
    ema: dict  # EMA.state_dict(): {"module": state dict, "decay": ...}
    optimizer: dict
    epoch: int  # epochs completed
    dataset_sha256: str
    dataset_rows: int
    sweep_run_id: str = ""
    backbone_run_id: str = ""
    metrics: dict = field(default_factory=dict)  # the last epoch's training metrics
    preference: dict | None = None  # after preference alignment: {"config": ..., "metrics": ...}
    objectives: list = field(default_factory=list)  # what w's columns weigh; empty (older files): the paper's pair
    # the training adapters' validation (NDCG@10 lo, hi, α-NDCG@10 lo, hi): best-of-N's w-utility scale
    utility_bounds: list = field(default_factory=list)

    @property
    def prediction(self) -> str:
        return self.train_config["prediction"]

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_dict(cls, content: object, source: str = "checkpoint") -> GeneratorCheckpoint:
        """Checked: a foreign file or another format version is an error naming `source`."""
        if not isinstance(content, dict) or content.get("format") not in (FORMAT, 1):
            raise ValueError(f"{source} is not a PaDiRec generator checkpoint (no format {FORMAT!r})")
        version = content.get("version", 1)  # files of the first release wrote format=1 and no version
        if version != VERSION:
            raise ValueError(f"{source} is a generator checkpoint of format version {version}; this PaDiRec reads "
                             f"version {VERSION}: retrain it with `padirec train-dit`")
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        missing = sorted(required - set(content))
        if missing:
            raise ValueError(f"{source}: generator checkpoint lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in content.items() if k in names})

    def lineage(self) -> dict[str, str]:
        return {"dataset_sha256": self.dataset_sha256, "sweep_run_id": self.sweep_run_id,
                "backbone_run_id": self.backbone_run_id}

    def objective_names(self) -> list[str]:
        """The objectives the generator's condition w weighs, in order."""
        return list(self.objectives) or ["accuracy", "diversity"][: self.dit_config.get("cond_dim", 2)]

    def summary(self) -> dict:
        """What a loaded generator reports about itself (no tensors)."""
        return {**self.lineage(), "epoch": self.epoch, "metrics": self.metrics, "dataset_rows": self.dataset_rows,
                "train_config": self.train_config, "dit_config": self.dit_config,
                "schedule_config": self.schedule_config, "objectives": self.objective_names(),
                "utility_bounds": list(self.utility_bounds)}


def save_checkpoint(checkpoint: GeneratorCheckpoint, path: str | os.PathLike) -> Path:
    """Write atomically (a crash mid-write leaves the previous file intact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(checkpoint.to_dict(), tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> GeneratorCheckpoint:
    try:
        content = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - torch raises several types for a file that is not its own
        raise ValueError(f"{path} is not a PaDiRec generator checkpoint (torch.load failed: {err})") from err
    return GeneratorCheckpoint.from_dict(content, str(path))

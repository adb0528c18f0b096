"""Dataclass configs: built from YAML or dicts, overridden with ``--key=value``, saved next to runs.

A run is described by one :class:`RunConfig`::

    model: sasrec                # which model; its own settings go under `model_config`
    data: {dataset: ml-100k, max_len: 50}
    train: {epochs: 200, batch_size: 64, lr: 0.001}
    model_config: {hidden_size: 64, num_layers: 2}

Example:
    >>> cfg = RunConfig.from_dict({"model": "sasrec", "train": {"lr": 0.01}})
    >>> cfg = cfg.with_overrides(["train.epochs=3", "model_config.dropout=0.1"])
    >>> (cfg.train.lr, cfg.train.epochs, cfg.model_config.dropout)
    (0.01, 3, 0.1)
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from memrec.errors import ConfigError


@dataclass
class DataConfig:
    """Which data, how it is filtered and split."""

    dataset: str = "ml-100k"  # a registered name or a path to a file or folder
    data_dir: str | None = None  # where registered data sets are looked for (else $MEMREC_DATA_DIR)
    format: str | None = None  # atomic | atomic-split | s3rec | json | grouplens; None = detect
    min_rating: float | None = None  # drop interactions rated below this
    user_core: int = 0  # k-core: keep users with at least this many interactions
    item_core: int = 0  # k-core: keep items with at least this many interactions
    split: str = "leave_one_out"  # leave_one_out | global_time
    valid_fraction: float = 0.1  # global_time only: share of the time line for validation
    test_fraction: float = 0.1  # global_time only: share of the time line for test
    max_len: int = 50  # longest history a model sees
    download: bool = True  # fetch a registered data set from its official source if missing


@dataclass
class TrainConfig:
    """How a model is trained and evaluated."""

    epochs: int = 200
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: str = "ce"  # ce (full softmax) | sampled_softmax | bpr
    num_negatives: int = 256  # sampled_softmax only
    train_windows: str = "all"  # all: every position of the history once; last: last max_len only
    grad_clip: float | None = 5.0
    patience: int = 20  # early stopping: epochs without a better validation NDCG@10
    eval_every: int = 1
    eval_batch_size: int = 256  # rows per evaluation batch: results do not depend on it; 256 keeps the work in cache
    metric_ks: tuple[int, ...] = (5, 10, 20)
    seed: int = 42
    threads: int = 1
    max_minutes: float | None = None  # stop training after this much wall time


@dataclass
class RunConfig:
    """Everything that defines a run; saved as `config.yaml` next to its results."""

    model: str = "sasrec"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model_config: Any = None  # the model's own dataclass; filled from `model`

    def __post_init__(self):
        from memrec.models import model_config_class

        cls = model_config_class(self.model)
        if self.model_config is None:
            self.model_config = cls()
        elif isinstance(self.model_config, dict):
            self.model_config = from_dict(cls, self.model_config, "model_config")
        elif not isinstance(self.model_config, cls):
            raise ConfigError(f"model_config must be a {cls.__name__} for model {self.model!r}")

    @classmethod
    def from_dict(cls, raw: dict) -> "RunConfig":
        raw = dict(raw or {})
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}; expected model, data, train, model_config")
        return cls(
            model=str(raw.get("model", "sasrec")),
            data=from_dict(DataConfig, raw.get("data") or {}, "data"),
            train=from_dict(TrainConfig, raw.get("train") or {}, "train"),
            model_config=dict(raw.get("model_config") or {}),
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> "RunConfig":
        return cls.from_dict(load_yaml(path))

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "data": dataclasses.asdict(self.data),
            "train": _plain(dataclasses.asdict(self.train)),
            "model_config": _plain(dataclasses.asdict(self.model_config)),
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    def with_overrides(self, overrides: list[str]) -> "RunConfig":
        """Return a copy with ``section.key=value`` overrides applied (values parsed as YAML)."""
        raw = self.to_dict()
        for item in overrides:
            apply_override(raw, item)
        return RunConfig.from_dict(raw)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def apply_override(raw: dict, item: str) -> None:
    """Apply one ``a.b=value`` override to a nested dict in place."""
    text = item[2:] if item.startswith("--") else item
    if "=" not in text:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.lr=0.001")
    key, value = text.split("=", 1)
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a config section")
        node = node[part]
    if len(parts) > 1 and parts[-1] not in node and parts[0] != "model_config":
        raise ConfigError(f"override {item!r}: unknown key {parts[-1]!r} in {'.'.join(parts[:-1])}; known: {sorted(node)}")
    node[parts[-1]] = yaml.safe_load(value) if value != "" else None


def from_dict(cls, raw: dict, where: str):
    """Build dataclass `cls` from a dict, checking keys and value types."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; known keys: {sorted(names)}")
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in raw.items()})


def _coerce(value, hint, where: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {hint}, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return origin(_coerce(v, args[0], where) for v in value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and type(value) is hint:
        return value
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value, where)
    raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def _plain(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

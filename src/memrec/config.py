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
import inspect
import io
import re
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from memrec.errors import ConfigError


@dataclass
class DataConfig:
    """Which data, how it is filtered and split."""

    dataset: str = "ml-100k"  # a registered name or a path to a file or folder
    data_dir: str | None = None  # where registered data sets are looked for (else $MEMREC_DATA_DIR)
    format: str | None = None  # atomic | atomic-split | s3rec | json | grouplens | csv | parquet | dat; None = detect
    min_rating: float | None = None  # drop interactions rated below this
    user_core: int = 0  # k-core: keep users with at least this many interactions
    item_core: int = 0  # k-core: keep items with at least this many interactions
    split: str = "leave_one_out"  # leave_one_out | global_time
    valid_fraction: float = 0.1  # global_time only: share of the time line for validation
    test_fraction: float = 0.1  # global_time only: share of the time line for test
    max_len: int = 50  # longest history a model sees
    download: bool = True  # fetch a registered data set from its official source if missing
    columns: dict[str, str] | None = None  # CSV / TSV / Parquet: role -> column name (roles user, item, rating, time, title, categories), e.g. {user: member}; None: known names
    item_file: str | None = None  # item titles and categories: a CSV / TSV / Parquet / .dat file with an item column; None: movies.* or items.* beside a table

    def __post_init__(self):
        from memrec.data.columns import ROLES  # the roles a column can have (imported late: memrec.data imports this module)

        if self.columns is not None:
            bad = {k: v for k, v in self.columns.items() if k not in ROLES or not isinstance(v, str) or not v}
            if bad:
                raise ConfigError(f"data.columns: expected role=column name with roles among {list(ROLES)}, got {bad}")


@dataclass
class TrainConfig:
    """How a model is trained and evaluated."""

    epochs: int = 200  # most passes over the training data (early stopping may end sooner)
    batch_size: int = 64  # training windows per step
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 0.0  # L2 penalty on the weights
    loss: str = "ce"  # ce (full softmax) | sampled_softmax | bpr
    num_negatives: int = 256  # negatives sampled per position (sampled_softmax only)
    sampler: str = "uniform"  # sampled_softmax's negatives: uniform | popularity (training counts + 1) | in_batch (the batch's other targets)
    logq: bool = True  # sampled_softmax: lower each candidate's logit by the log of its sampling probability (no effect for uniform)
    train_windows: str = "all"  # all: every position of the history once; last: last max_len only; prefixes: one sample per target, trained at its last position (BSARec's recipe)
    grad_clip: float | None = 5.0  # clip the gradient norm to this; None: no clipping
    patience: int = 20  # early stopping: epochs without a better validation NDCG@10
    eval_every: int = 1  # validate every this many epochs
    eval_batch_size: int = 256  # rows per evaluation batch: results do not depend on it; 256 keeps the work in cache
    metric_ks: tuple[int, ...] = (5, 10, 20)  # the K of HR@K, Recall@K, NDCG@K and MRR@K
    seed: int = 42  # random seed of weights, shuffling and dropout
    threads: int = 1  # torch threads (one is fastest for these sizes on a small CPU)
    max_minutes: float | None = None  # stop training after this much wall time


@dataclass
class NeighbourConfig:
    """The neighbour memory of a run (``memory.neighbours`` in a run config; ``--memory neighbours``):
    whether it is built after training, the values each entry holds (``horizon``), and the candidate
    settings (k, temperature, weight, gate, decay) tried on validation, the weight 0 (no memory) always
    among them. Validated when built.

    Example:
        >>> NeighbourConfig(ks=(8,), temperatures=(0.3,), weights=(0.5,), gates=(-1.0, 0.9), decays=(0.0,)).settings()
        [(0, 1.0, 0.0, -1.0, 0.0), (8, 0.3, 0.5, -1.0, 0.0), (8, 0.3, 0.5, 0.9, 0.0)]
        >>> NeighbourConfig(weights=(1.0,))
        Traceback (most recent call last):
        ...
        memrec.errors.ConfigError: memory.neighbours: expected ks >= 1, temperatures > 0, weights in (0, 1), gates in [-1, 1], decays in [0, 1], horizon >= 1 and confidence in [0, 1), got ks=(32, 128, 512, 2048) temperatures=(0.1, 0.3) weights=(1.0,) gates=(-1.0,) decays=(0.0, 0.5) horizon=5 confidence=0.95
    """

    enabled: bool = False  # build the neighbour memory after training (then tuned on validation; unused if its gain is within noise)
    ks: tuple[int, ...] = (32, 128, 512, 2048)  # candidate numbers of neighbours read per query
    temperatures: tuple[float, ...] = (0.1, 0.3)  # candidate softmax temperatures over neighbour similarities
    weights: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7)  # candidate weights of the memory's scores in the mix
    gates: tuple[float, ...] = (-1.0,)  # candidate gates: a query mixes only when its nearest similarity reaches it; -1: every query mixes
    decays: tuple[float, ...] = (0.0, 0.5)  # weight of a neighbour's j-th next item: decay^(j-1); 0: the next item only
    horizon: int = 5  # an entry's values: the next this many items of its owner (5 was chosen on validation on all four data sets)
    confidence: float = 0.95  # a setting is eligible only if this interval of its validation gain lies above 0; 0: any gain
    index: str = "auto"  # how entries are searched: auto (exact below 10^6 entries, FAISS IVF from there), torch / faiss (exact), ivf, hnsw

    def __post_init__(self):
        for name in ("ks", "temperatures", "weights", "gates", "decays"):
            setattr(self, name, tuple(getattr(self, name)))
        if not (self.ks and self.temperatures and self.weights and self.gates and self.decays) or min(self.ks) < 1 \
                or min(self.temperatures) <= 0 or not all(0 < w < 1 for w in self.weights) \
                or not all(-1.0 <= g <= 1.0 for g in self.gates) or not all(0.0 <= d <= 1.0 for d in self.decays) \
                or self.horizon < 1 or not 0.0 <= self.confidence < 1.0:
            shown = " ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self) if f.name not in ("enabled", "index"))
            raise ConfigError(f"memory.neighbours: expected ks >= 1, temperatures > 0, weights in (0, 1), gates in [-1, 1], "
                              f"decays in [0, 1], horizon >= 1 and confidence in [0, 1), got {shown}")
        from memrec.memory.index import BACKENDS  # here: memrec.memory imports this module
        if self.index not in BACKENDS:
            raise ConfigError(f"memory.neighbours.index: expected one of {', '.join(BACKENDS)}, got {self.index!r}")

    def search(self):
        """The :class:`memrec.memory.index.SearchConfig` the memory searches through."""
        from memrec.memory.index import SearchConfig
        return SearchConfig(backend=self.index)

    def settings(self) -> list[tuple[int, float, float, float, float]]:
        return [(0, 1.0, 0.0, -1.0, 0.0)] + [(k, t, w, g, d) for k in self.ks for t in self.temperatures for w in self.weights
                                             for g in self.gates for d in self.decays]


@dataclass
class MemoryLayerConfig:
    """Memories any model can carry, built by the trainer after training (see :mod:`memrec.memory`)."""

    neighbours: NeighbourConfig = field(default_factory=NeighbourConfig)


@dataclass
class RunConfig:
    """Everything that defines a run; saved as `config.yaml` next to its results."""

    model: str = "sasrec"  # which model: sasrec | gru4rec | ramrec | ur4rec-moe | memory-moe
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model_config: Any = None  # the model's own dataclass; filled from `model`
    memory: MemoryLayerConfig = field(default_factory=MemoryLayerConfig)

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
        raw = _moved_neighbour_keys(dict(raw or {}))
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}; expected model, data, train, model_config, memory")
        return cls(
            model=str(raw.get("model", "sasrec")),
            data=from_dict(DataConfig, raw.get("data") or {}, "data"),
            train=from_dict(TrainConfig, raw.get("train") or {}, "train"),
            model_config=dict(raw.get("model_config") or {}),
            memory=from_dict(MemoryLayerConfig, raw.get("memory") or {}, "memory"),
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
            "memory": {"neighbours": _plain(dataclasses.asdict(self.memory.neighbours))},
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    def with_overrides(self, overrides: list[str]) -> "RunConfig":
        """Return a copy with ``section.key=value`` overrides applied (values parsed as YAML)."""
        raw = self.to_dict()
        for item in overrides:
            apply_override(raw, item)
        return RunConfig.from_dict(raw)


def _moved_neighbour_keys(raw: dict) -> dict:
    """Configs written before the memory layer kept the neighbour memory in RAMRec's model_config
    (``neighbours``, ``neighbour_ks``, ...): read them as ``memory.neighbours`` (``enabled``, ``ks``, ...)."""
    model_config = raw.get("model_config")
    if not isinstance(model_config, dict) or not any(k == "neighbours" or k.startswith("neighbour_") for k in model_config):
        return raw
    model_config = dict(model_config)
    moved = {"enabled" if k == "neighbours" else k[len("neighbour_"):]: model_config.pop(k)
             for k in list(model_config) if k == "neighbours" or k.startswith("neighbour_")}
    memory = dict(raw.get("memory") or {})
    # RAMRec built its neighbour memory unless told not to; a key named the old way (an old file, or an
    # override such as --model_config.neighbour_confidence=0) wins over the section it joins
    memory["neighbours"] = {"enabled": True, **(memory.get("neighbours") or {}), **moved}
    return {**raw, "model_config": model_config, "memory": memory}


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        from memrec.data.readers import read_text  # the one checked read of a text file (not UTF-8: one line)

        raw = yaml.safe_load(read_text(path))
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
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {_coerce(k, args[0], where): _coerce(v, args[1], where) for k, v in value.items()}
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


# ----------------------------------------------------------------------------- what each key means
# A key's meaning is the comment after its field's definition. The models' settings live in
# memrec.models, and these of them have no comment there yet: their meanings are written here, once
# (tests/test_config.py checks that every key of every model has a meaning, and that none below is
# shadowed by a comment on the field).
KEY_HELP = {
    "hidden_size": "width of the hidden states (SASRec-based models: also of the item embeddings)",
    "embedding_size": "width of the item embeddings",
    "num_layers": "stacked layers: Transformer blocks, or GRU layers",
    "num_heads": "attention heads per Transformer block",
    "inner_size": "hidden width of each block's feed-forward part (memory-moe: of each expert)",
    "dropout": "dropout rate in training",
    "init_std": "standard deviation of the initial weights",
    "k_min": "adaptive K: fewest memory entries read per position",
    "k_max": "adaptive K: most memory entries read per position",
    "w_recency": "quality weight of recency for pruning a bank (memrec.memory.transitions)",
    "w_usefulness": "quality weight of usefulness (attention received) for pruning a bank",
    "recency_scale": "writes over which an unused entry's recency decays by a factor e",
    "num_experts": "experts per mixture-of-experts block",
    "top_k_experts": "experts each position is routed to",
    "use_memory": "read (and write) the model's own memory; False: the same network without it (ablation)",
    "short_term_capacity": "recent memories per expert",
    "long_term_capacity": "consolidated memories per expert",
    "episodic_capacity": "specific experiences per expert",
    "semantic_capacity": "prototypes (general knowledge) per expert",
    "top_k_retrieve": "memory entries each read retrieves",
    "similarity_threshold": "minimum cosine similarity of a retrieved entry",
    "consolidation_interval": "storing steps between consolidations (0: only on demand)",
    "consolidation_threshold": "importance needed to move an entry from short- to long-term memory",
    "enable_pruning": "drop entries whose importance fell below min_importance",
    "prune_interval": "storing steps between prunings (0: only on demand)",
    "min_importance": "pruning keeps entries at or above this importance",
    "importance_half_life": "storing steps for an entry's importance to halve",
    "use_faiss": "search memories with a FAISS index (faiss-cpu) instead of exact torch search",
    "candidate_slack": "extra candidates asked from the index before exact re-scoring",
    "modalities": "item inputs: a non-empty subset of id, text, image",
    "memory_dim": "width of each user's memory vector",
    "update_trigger": "when a user's memory updates: interaction_count | drift_threshold | time_based | explicit",
    "interaction_threshold": "interaction_count trigger: pending interactions per update",
    "drift_threshold": "drift_threshold trigger: cosine distance (0 to 2) of the drift that updates the memory",
    "decay_factor": "the memory is multiplied by this before each update",
    "max_memory_size": "past memory states kept per user",
    "time_period": "time_based trigger: period in data time units (None: every interaction_threshold interactions)",
    "text_encoder": "sentence-transformers model that encodes item text",
    "text_dim": "width of the text encoder's vectors",
    "image_encoder": "image model that encodes item images",
    "image_dim": "width of the image encoder's features",
}


def field_comments(cls) -> dict[str, str]:
    """The comment after each field's definition in a dataclass or its bases (the subclass's wins).

    Example:
        >>> field_comments(TrainConfig)["patience"]
        'early stopping: epochs without a better validation NDCG@10'
    """
    names = {f.name for f in fields(cls)}
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # no source (a frozen install): no comments
            continue
        comments = {t.start[0]: t.string.lstrip("#").strip()
                    for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.COMMENT}
        for number, line in enumerate(source.splitlines(), start=1):
            found = re.match(r" {4}(\w+)\s*:", line)
            if found and found.group(1) in names and number in comments:
                out[found.group(1)] = comments[number]
    return out


def describe(cfg: RunConfig) -> list[tuple[str, Any, str]]:
    """Every key of a run config as ``(section.key, value, meaning)``; meaning "" where none is written.

    Example:
        >>> [row for row in describe(RunConfig(model="gru4rec")) if row[0] in ("train.epochs", "model_config.dropout")]
        [('train.epochs', 200, 'most passes over the training data (early stopping may end sooner)'), ('model_config.dropout', 0.3, 'dropout rate in training')]
    """
    raw = cfg.to_dict()
    sections = (("data", DataConfig, raw["data"]), ("train", TrainConfig, raw["train"]),
                ("model_config", type(cfg.model_config), raw["model_config"]), ("memory.neighbours", NeighbourConfig, raw["memory"]["neighbours"]))
    rows = [("model", cfg.model, field_comments(RunConfig)["model"])]
    for name, cls, values in sections:
        meanings = {**KEY_HELP, **field_comments(cls)}
        rows += [(f"{name}.{key}", value, meanings.get(key, "")) for key, value in values.items()]
    return rows

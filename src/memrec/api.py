"""memrec from Python: train a model, load a run, recommend items by their own ids, evaluate.

The command line calls the same functions (``memrec train`` :func:`run_config` and :func:`train`,
``memrec evaluate`` and ``memrec recommend`` :func:`load`), so both give the same answers.

Example:
    >>> import tempfile, memrec
    >>> rec = memrec.train("gru4rec", "ml-100k", tempfile.mkdtemp(), epochs=1, hidden_size=16, log=None)
    >>> sorted(rec.metrics["test"])[:3]
    ['hit@10', 'hit@20', 'hit@5']
    >>> rec.recommend(user="196", k=1)  # doctest: +ELLIPSIS
    [Recommendation(rank=1, item='...', score=..., title='...')]
    >>> [r.title for r in rec.recommend(history=["50", "181"], k=5)][0] != ""
    True
    >>> again = memrec.load(rec.path)  # a run folder or its checkpoint.pt
    >>> again.evaluate("test")["ndcg@10"] == rec.metrics["test"]["ndcg@10"]
    True
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

from memrec.errors import ConfigError, MemrecError

CONFIG_DIR = Path(__file__).parent / "configs"
MEMORY_SETTINGS = ("as-trained", "off")  # how a loaded model uses its neighbour memory


@dataclass(frozen=True)
class Recommendation:
    """One recommended item: its rank (1 is best), the data set's own item id, the model's score and
    the item's title (None when the data set has no titles)."""

    rank: int
    item: str
    score: float
    title: str | None = None

    def to_dict(self) -> dict:
        """The fields by name, as ``memrec recommend --json`` prints them.

        Example:
            >>> Recommendation(1, "50", 3.25, "Star Wars").to_dict()
            {'rank': 1, 'item': '50', 'score': 3.25, 'title': 'Star Wars'}
        """
        return asdict(self)


class Recommender:
    """A trained model with the data set it was trained on, its split and, for a run folder, its metrics.

    Built by :func:`train` and :func:`load`. ``model``, ``config``, ``dataset`` and ``split`` are the
    library's own objects, for anything the methods below do not cover.

    Example:
        >>> rec = _tiny_run()
        >>> rec
        Recommender(gru4rec on clicks, 12 users, 9 items)
    """

    def __init__(self, checkpoint, dataset, split, path: Path | None = None, metrics: dict | None = None, memory: str = "as-trained"):
        self.checkpoint = checkpoint
        self.model = checkpoint.model
        self.config = checkpoint.config
        self.dataset = dataset
        self.split = split
        self.path = path
        self.metrics = metrics  # the run's metrics.json, when loaded from a run folder
        self._trained_setting = self.model.neighbours.setting.clone()
        self.memory = _checked_memory(memory)
        self._use_memory(self.memory)

    def __repr__(self) -> str:
        ds = self.dataset
        return f"Recommender({self.config.model} on {ds.name}, {ds.num_users} users, {ds.num_items} items)"

    def recommend(self, user: str | int | None = None, history: Iterable[str | int] | None = None, k: int = 10,
                  memory: str | None = None) -> list[Recommendation]:
        """The top ``k`` items for a ``user`` of the data set (their whole history is read and excluded)
        or for a ``history`` of item ids (excluded too), best first, as the data set's own item ids.

        Example:
            >>> rec = _tiny_run()
            >>> [r.item for r in rec.recommend(user="u1", k=3)] != []
            True
            >>> rec.recommend(history=[], k=3)
            Traceback (most recent call last):
            ...
            memrec.errors.MemrecError: empty history: expected at least one item id (or user=... for a user of the data set)
        """
        import numpy as np

        from memrec.data.batching import make_eval_batch

        _require_positive("k", k)
        ds = self.dataset
        if (user is None) == (history is None):
            raise MemrecError("give user=... (a user id of the data set) or history=[item id, ...], one of them")
        if history is not None:
            if isinstance(history, (str, bytes)):
                raise MemrecError(f"history: expected a list of item ids, got the string {history!r}")
            items = np.array([ds.item_index(i) for i in history], dtype=np.int64)
            if len(items) == 0:
                raise MemrecError("empty history: expected at least one item id (or user=... for a user of the data set)")
            row = -1  # nobody's: no user-specific memory is read
        else:
            row = ds.user_index(user)
            items = ds.sequences[row]
        batch = make_eval_batch(np.array([row]), [items], np.array([0]), self.config.data.max_len)
        with self._memory(memory):
            top, scores = self.model.recommend(batch, k=k)
        return [Recommendation(rank, ds.item_ids[i], float(s), ds.items.title[i] or None)
                for rank, (i, s) in enumerate(zip(top[0].tolist(), scores[0].tolist()), start=1)]

    def evaluate(self, split: str = "test", memory: str | None = None, batch_size: int | None = None) -> dict[str, float]:
        """Full-ranking metrics on the ``valid`` or ``test`` users (leave-one-out by default: each
        user's last item is ranked against every item, their history masked), as ``memrec evaluate``.
        ``memory="off"``: the same weights without the neighbour memory.

        Example:
            >>> rec = _tiny_run()
            >>> metrics = rec.evaluate("valid")
            >>> metrics["ndcg@10"] == rec.metrics["valid"]["ndcg@10"], 0 <= metrics["hit@10"] <= 1
            (True, True)
        """
        from memrec.train.evaluate import evaluate

        if split not in ("valid", "test"):
            raise MemrecError(f"split must be 'valid' or 'test', got {split!r}")
        _require_positive("batch_size", batch_size)
        t = self.config.train
        with self._memory(memory):
            return evaluate(self.model, getattr(self.split, split), self.config.data.max_len, batch_size or t.eval_batch_size, t.metric_ks)

    @contextmanager
    def _memory(self, memory: str | None):
        self._use_memory(_checked_memory(memory or self.memory))
        try:
            yield
        finally:
            self._use_memory(self.memory)

    def _use_memory(self, memory: str) -> None:
        if memory == "off":
            self.model.neighbours.set(k=0, temperature=1.0, weight=0.0)
        else:
            self.model.neighbours.setting = self._trained_setting.clone()


def load(path: str | Path, *, dataset: str | None = None, data_dir: str | None = None, columns: dict[str, str] | None = None,
         memory: str = "as-trained") -> Recommender:
    """A trained model from a run folder of ``memrec train`` (or its ``checkpoint.pt``), with its data.

    The data is read from where the checkpoint says it came from, while those files exist; else the
    data set is looked up by name (``data_dir``, ``$MEMREC_DATA_DIR``). ``dataset`` (a name or path),
    ``data_dir`` and ``columns`` override the checkpoint's; the data must be the one the model was
    trained on. ``memory="off"``: the same weights without the neighbour memory.

    Example:
        >>> rec = _tiny_run()
        >>> load(rec.path / "checkpoint.pt").recommend(user="u1", k=2) == rec.recommend(user="u1", k=2)
        True
    """
    from memrec.data import load_dataset, split_dataset
    from memrec.train.checkpoint import load_checkpoint

    memory = _checked_memory(memory)
    ckpt = load_checkpoint(path)
    changes = {k: v for k, v in (("dataset", dataset), ("data_dir", data_dir), ("columns", columns)) if v is not None}
    data = ckpt.config.data = replace(ckpt.config.data, **changes)  # replace: a DataConfig checks itself again
    ds = load_dataset(data, recorded=None if dataset or data_dir else ckpt.data_source)
    ckpt.check_dataset(ds)
    split = split_dataset(ds, data.split, data.valid_fraction, data.test_fraction)
    ckpt.model.prepare(ds, split)
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else None
    return Recommender(ckpt, ds, split, folder, metrics, memory)


def train(model: str | None = None, dataset: str | None = None, output: str | Path | None = None, *, config: str | Path | None = None,
          data_dir: str | None = None, memory: str | None = None, frozen: bool = True, overwrite: bool = False,
          log: Callable | None = print, **settings) -> Recommender:
    """Train and evaluate a model as ``memrec train`` does, write the run to ``output`` and return it loaded.

    ``model`` and ``dataset`` default to the config's (else sasrec on ml-100k); the config is
    ``config`` (a YAML file), else the frozen config shipped for the model and data set (``frozen``),
    else the built-in defaults. ``settings`` override it: a key of one section (``epochs=1``,
    ``hidden_size=32``, ``max_len=20``, ``columns={"user": "member"}``) or a whole section as a dict
    (``train={"epochs": 1}``); ``memrec config show MODEL`` lists them. ``memory``: ``"neighbours"`` or
    ``"off"``, as ``--memory``. ``log``: where progress lines go (None: nowhere). The run's metrics
    are ``.metrics`` of the result.

    Example:
        >>> rec = _tiny_run()
        >>> rec.metrics["epochs"], rec.metrics["dataset"], (rec.path / "checkpoint.pt").is_file()
        (1, 'clicks', True)
    """
    from memrec.train import train_and_evaluate

    if output is None:
        raise MemrecError("give output=FOLDER: the run's checkpoint, metrics and logs are written there")
    cfg = run_config(model, dataset, config=config, data_dir=data_dir, frozen=frozen, memory=memory, settings=settings, log=log)
    metrics = train_and_evaluate(cfg, output, log=log or (lambda *_: None), progress=False if log is None else None, overwrite=overwrite)
    rec = load(output)
    rec.metrics = metrics
    return rec


def frozen_config(model: str, dataset: str) -> Path | None:
    """The frozen config shipped for a model and registered data set, if there is one.

    Example:
        >>> frozen_config("sasrec", "ml-100k").name, frozen_config("sasrec", "my-data.csv")
        ('sasrec-ml-100k.yaml', None)
    """
    path = CONFIG_DIR / f"{model}-{dataset}.yaml"
    return path if path.is_file() else None


def run_config(model: str | None = None, dataset: str | None = None, *, config: str | Path | None = None, data_dir: str | None = None,
               frozen: bool = True, memory: str | None = None, columns: dict[str, str] | None = None, overrides: Iterable[str] = (),
               settings: dict | None = None, log: Callable | None = None):
    """The :class:`~memrec.config.RunConfig` of a run: ``config`` (else the frozen config for the model
    and data set, unless ``frozen`` is False), then ``model``, ``dataset``, ``data_dir``, ``columns``,
    the ``memory`` flag, ``overrides`` (``section.key=value`` strings, as the command line takes them)
    and ``settings`` (Python values, see :func:`train`). ``log`` hears which config file was used.

    Example:
        >>> cfg = run_config("gru4rec", "ml-100k", overrides=["train.epochs=3"], settings={"hidden_size": 8})
        >>> cfg.model, cfg.train.epochs, cfg.model_config.hidden_size
        ('gru4rec', 3, 8)
        >>> run_config(settings={"epoch": 3})
        Traceback (most recent call last):
        ...
        memrec.errors.ConfigError: unknown setting 'epoch': expected a key of data, train, model_config or memory.neighbours (`memrec config show MODEL` lists them), or a section as a dict such as train={'epochs': 1}
    """
    from memrec.config import RunConfig, load_yaml

    config_path = config or (frozen_config(model or "sasrec", dataset or "ml-100k") if frozen else None)
    raw = load_yaml(config_path) if config_path else {}
    if model and raw.get("model", model) != model:
        if config:  # the user's own file: its model settings would be lost without a word
            raise ConfigError(f"config {config} is for model {raw['model']}, not {model}: its model_config would not apply; "
                              f"drop --model or give a {model} config")
        raw = {k: v for k, v in raw.items() if k != "model_config"}  # another model's frozen settings do not apply
    raw.setdefault("data", {})
    if model:
        raw["model"] = model
    for key, value in (("dataset", dataset), ("data_dir", data_dir), ("columns", columns)):
        if value:
            raw["data"][key] = value
    cfg = RunConfig.from_dict(raw)
    if frozen and not config_path and cfg.data.dataset:  # data nobody tuned: the rules of memrec.defaults
        cfg = _with_data_defaults(cfg, recommended=model is None and not config, log=log)
    elif dataset and model is None and not config:  # a data set named, no model: the recommended configuration
        cfg.memory.neighbours.enabled = True
    if memory:  # the flag wins over the config file; memory.neighbours.* overrides still apply after it
        if memory not in ("neighbours", "off"):
            raise ConfigError(f"memory must be 'neighbours' or 'off', got {memory!r}")
        cfg.memory.neighbours.enabled = memory == "neighbours"
    cfg = _with_settings(cfg.with_overrides(list(overrides)), settings or {})
    if config_path and log:  # said once the config is valid: a refused one is the error's one line
        log(f"config: {config_path}")
    return cfg


def _with_data_defaults(cfg, recommended: bool, log: Callable | None):
    """``cfg`` with the settings :mod:`memrec.defaults` reads from the data's statistics, and, when
    ``recommended`` (no model named), memrec's recommended configuration: SASRec with the neighbour memory."""
    from memrec.config import RunConfig
    from memrec.data import load_dataset
    from memrec.defaults import RECOMMENDED_MODEL, apply_data_defaults, prefix_positions

    raw = cfg.to_dict()
    if recommended:
        raw["model"] = RECOMMENDED_MODEL
    ds = load_dataset(cfg.data)
    stats = {**ds.stats(), "prefix_positions": prefix_positions([len(s) for s in ds.sequences], cfg.data.max_len)}
    chosen = apply_data_defaults(raw, stats)
    if recommended:
        raw["memory"]["neighbours"]["enabled"] = True
        chosen.append("memory.neighbours.enabled=true")
    if log:
        log(f"config: {raw['model']} with settings from the data's statistics (docs/defaults.md): {' '.join(chosen)}")
    return RunConfig.from_dict(raw)


SECTIONS = ("data", "train", "model_config", "memory.neighbours")


def _with_settings(cfg, settings: dict):
    """``cfg`` with Python ``settings`` applied: ``key=value`` for a key of exactly one section, or
    ``section={key: value}``; checked as the config is rebuilt."""
    from memrec.config import RunConfig

    if not settings:
        return cfg
    raw = cfg.to_dict()
    sections = {"data": raw["data"], "train": raw["train"], "model_config": raw["model_config"], "memory.neighbours": raw["memory"]["neighbours"]}
    for key, value in settings.items():
        if key in sections:
            if not isinstance(value, dict):
                raise ConfigError(f"setting {key}: expected a dict of its keys, e.g. {key}={{...}}, got {value!r}")
            sections[key].update(value)
            continue
        homes = [name for name, section in sections.items() if key in section]
        if len(homes) != 1:
            where = f"it is a key of {homes}: give it as a section dict" if homes else \
                "expected a key of data, train, model_config or memory.neighbours (`memrec config show MODEL` lists them)"
            raise ConfigError(f"unknown setting {key!r}: {where}, or a section as a dict such as train={{'epochs': 1}}"
                              if not homes else f"ambiguous setting {key!r}: {where}")
        sections[homes[0]][key] = value
    return RunConfig.from_dict(raw)


def parse_columns(text: str | None) -> dict[str, str] | None:
    """``--columns user=member,item=sku`` as a dict (None for None).

    Example:
        >>> parse_columns("user=member, item=sku")
        {'user': 'member', 'item': 'sku'}
    """
    if text is None:
        return None
    pairs = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in pairs if p.count("=") != 1 or not all(s.strip() for s in p.split("="))]
    if bad or not pairs:
        raise ConfigError(f"--columns {text!r}: expected ROLE=COLUMN pairs separated by commas, e.g. user=member,item=sku")
    return {role.strip(): name.strip() for role, name in (p.split("=") for p in pairs)}


def _checked_memory(memory: str) -> str:
    if memory not in MEMORY_SETTINGS:
        raise MemrecError(f"memory must be one of {MEMORY_SETTINGS}, got {memory!r}")
    return memory


def _require_positive(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise MemrecError(f"{name} must be a positive integer, got {value}")


def _tiny_run() -> Recommender:
    """A run trained in a second on 12 users of a small CSV, for the examples above."""
    import tempfile

    folder = Path(tempfile.mkdtemp())
    rows = "".join(f"u{u},i{(u + j) % 9},{j}\n" for u in range(12) for j in range(6))
    (folder / "clicks.csv").write_text("user,item,timestamp\n" + rows)
    return train("gru4rec", str(folder / "clicks.csv"), folder / "run", epochs=1, hidden_size=8, embedding_size=8, log=None)

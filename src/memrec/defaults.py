"""Settings for a data set nobody tuned, read from the data's statistics.

memrec ships frozen configs (``src/memrec/configs/MODEL-DATASET.yaml``) for the registered data sets,
each chosen on validation. For any other data (a CSV of your own), ``memrec train --dataset PATH``
starts from the model's built-in defaults and adjusts the few settings that the frozen configs show
to depend on the data, by one rule each, without a search on that data:

====================  ===============================================  =================================
setting               rule                                             why (the frozen configs)
====================  ===============================================  =================================
model_config.dropout  0.5 when the mean sequence is shorter than 20,   the sparse Amazon sets (5-9 items
                      else 0.2                                         per user) need 0.5; ML-100K 0.2
                                                                       (LastFM, 48: 0.2 beat 0.5 on validation)
train.train_windows   prefixes when an epoch of them encodes at most   one sample per target beat one window
                      10 million item positions, else all; only for    per user on the validation of every
                      the models that search it (SASRec)               data set measured (Beauty, Sports,
                                                                       LastFM, Scientific, ML-100K); the
                                                                       positions grow with the square of
                                                                       the sequence (ML-100K: 3.8M, about a
                                                                       minute per epoch on one core)
====================  ===============================================  =================================

Without ``--model`` memrec trains its recommended configuration: SASRec with the neighbour memory
(other users' training positions), which validation switches off when its gain is within noise. A
setting given on the command line (``--train.batch_size=...``), in ``--config`` or as a frozen config
always wins over these rules.

Example:
    >>> rules = data_defaults({"users": 900, "interactions": 100_000, "avg_sequence_length": 106.0, "prefix_positions": 3_810_000})
    >>> rules["model_config"], rules["train"]
    ({'dropout': 0.2}, {'batch_size': 64, 'patience': 15, 'eval_every': 1, 'train_windows': 'prefixes'})
    >>> data_defaults({"users": 22_363, "interactions": 198_502, "avg_sequence_length": 8.9, "prefix_positions": 1_100_000})["model_config"]
    {'dropout': 0.5}
    >>> prefix_positions([4, 6, 60], max_len=50)  # targets after the first: 1; 1 + 2 + 3; 1 + ... + 50 + 7 x 50
    1632
"""
from __future__ import annotations

import numpy as np

RECOMMENDED_MODEL = "sasrec"  # with the neighbour memory: memrec's recommended configuration
SHORT_SEQUENCES = 20.0  # mean items per user below which dropout is 0.5
FEW_USERS = 5_000
MANY_INTERACTIONS = 150_000
PREFIX_BUDGET = 10_000_000  # item positions per epoch of prefix samples (ML-100K's 3.8M: about a minute on one core)


def prefix_positions(lengths, max_len: int) -> int:
    """Item positions one epoch of prefix samples encodes (``train.train_windows: prefixes``): every
    training target after the first, with up to ``max_len`` items before it; leave-one-out keeps each
    user's last two items apart. ``lengths``: items per user."""
    targets = np.maximum(np.asarray(lengths, dtype=np.int64) - 3, 0)  # (U,)
    full = np.minimum(targets, max_len)  # targets that see fewer than max_len items count 1, 2, ...
    return int((full * (full + 1) // 2 + (targets - full) * max_len).sum())


def data_defaults(stats: dict) -> dict[str, dict]:
    """The settings the rules above give for a data set's statistics (``SequenceDataset.stats()`` and
    :func:`prefix_positions` as ``prefix_positions``), by config section."""
    few_users, short = stats["users"] < FEW_USERS, stats["avg_sequence_length"] < SHORT_SEQUENCES
    return {
        "model_config": {"dropout": 0.5 if short else 0.2},
        "train": {"batch_size": 64 if few_users else 256, "patience": 15 if few_users else 10,
                  "eval_every": 2 if stats["interactions"] > MANY_INTERACTIONS else 1,
                  "train_windows": "prefixes" if stats["prefix_positions"] <= PREFIX_BUDGET else "all"},
    }


def apply_data_defaults(raw: dict, stats: dict) -> list[str]:
    """Fill ``raw`` (a config as a dict, before overrides) with :func:`data_defaults` where it sets
    nothing; model settings only for keys the model has (``raw["model_config"]`` holds its defaults),
    the training samples only for models whose ``search_space`` offers them.
    Returns what was set, as ``section.key=value`` strings, for the log."""
    from memrec.models import model_class

    searched = getattr(model_class(raw["model"]).config_class, "search_space", {})
    chosen = []
    for section, values in data_defaults(stats).items():
        target = raw.setdefault(section, {})
        for key, value in values.items():
            if section == "model_config" and key not in target:
                continue  # the model has no such setting (e.g. no dropout)
            if section == "train" and key == "train_windows" and f"train.{key}" not in searched:
                continue  # measured on SASRec only (RAMRec writes its banks from whole windows)
            target[key] = value
            chosen.append(f"{section}.{key}={value}")
    return chosen

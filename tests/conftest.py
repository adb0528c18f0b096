"""Shared fixtures. Real data sets come from ../shared/data beside the checkout."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(os.environ.get("MEMREC_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "ml-100k" / "ml-100k.inter").exists():
        pytest.skip(f"real data sets not found at {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ml100k(shared_data):
    from memrec.config import DataConfig
    from memrec.data import load_dataset

    return load_dataset(DataConfig(dataset="ml-100k", data_dir=str(shared_data), download=False))


@pytest.fixture(scope="session")
def ml100k_split(ml100k):
    from memrec.data import split_dataset

    return split_dataset(ml100k)

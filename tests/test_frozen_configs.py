"""Every frozen config loads, names a known model and data set, and states the numbers it reaches."""
import re

import pytest

from memrec.cli import CONFIG_DIR, frozen_config
from memrec.config import RunConfig
from memrec.data import REGISTRY

CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_there_are_frozen_configs():
    assert {p.name for p in CONFIGS} >= {"sasrec-ml-100k.yaml", "gru4rec-ml-100k.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_frozen_config_is_valid_and_states_its_numbers(path):
    config = RunConfig.from_yaml(path)
    assert path.stem == f"{config.model}-{config.data.dataset}"
    assert config.data.dataset in REGISTRY
    assert frozen_config(config.model, config.data.dataset) == path
    assert re.search(r"test NDCG@10 0\.\d{4}, HR@10 0\.\d{4}", path.read_text()), "state the measured figures"

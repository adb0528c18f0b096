import pytest

from memrec.config import DataConfig, RunConfig, TrainConfig, from_dict
from memrec.errors import ConfigError


def test_yaml_round_trip_keeps_every_value(tmp_path):
    cfg = RunConfig.from_dict({"model": "gru4rec", "data": {"dataset": "beauty", "max_len": 20}, "train": {"lr": 0.005, "metric_ks": [1, 5]}, "model_config": {"hidden_size": 32}})
    cfg.save(tmp_path / "c.yaml")
    again = RunConfig.from_yaml(tmp_path / "c.yaml")
    assert again == cfg
    assert again.train.metric_ks == (1, 5) and again.model_config.hidden_size == 32


def test_overrides_are_parsed_as_yaml_and_typed():
    cfg = RunConfig().with_overrides(["--train.lr=0.01", "train.max_minutes=null", "model_config.num_layers=3", "data.min_rating=4"])
    assert cfg.train.lr == 0.01 and cfg.train.max_minutes is None
    assert cfg.model_config.num_layers == 3 and cfg.data.min_rating == 4.0


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.lrr=0.1"], "unknown key 'lrr'"),
        (["train.epochs=many"], "train.epochs: expected int"),
        (["model_config.depth=2"], "unknown keys ['depth']"),
        (["trainlr"], "expected KEY=VALUE"),
        (["model=transformer9"], "unknown model 'transformer9'"),
    ],
)
def test_bad_overrides_say_what_was_expected(overrides, message):
    with pytest.raises(ConfigError, match=None) as err:
        RunConfig().with_overrides(overrides)
    assert message in str(err.value)


def test_unknown_sections_and_types_are_refused():
    with pytest.raises(ConfigError, match="unknown config keys"):
        RunConfig.from_dict({"trian": {}})
    with pytest.raises(ConfigError, match="expected a mapping"):
        from_dict(TrainConfig, [1, 2], "train")
    assert from_dict(DataConfig, {"min_rating": 4}, "data").min_rating == 4.0  # int accepted as float
    with pytest.raises(ConfigError, match="data.max_len: expected int"):
        from_dict(DataConfig, {"max_len": 2.5}, "data")


def test_ramrecs_old_neighbour_keys_are_read_as_the_memory_section():
    from memrec.config import RunConfig

    old = RunConfig.from_dict({"model": "ramrec", "model_config": {"hidden_size": 16, "neighbour_ks": [64], "neighbour_horizon": 5}})
    assert old.memory.neighbours.enabled and old.memory.neighbours.ks == (64,) and old.memory.neighbours.horizon == 5
    assert old.model_config.hidden_size == 16 and not hasattr(old.model_config, "neighbour_ks")
    off = RunConfig.from_dict({"model": "ramrec", "model_config": {"neighbours": False}})
    assert not off.memory.neighbours.enabled
    assert not RunConfig.from_dict({"model": "ramrec"}).memory.neighbours.enabled  # new configs: off unless asked
    assert RunConfig.from_dict(old.to_dict()) == old  # saved in the new layout, read back the same


def test_an_old_style_override_reaches_the_memory_section():
    from memrec.config import RunConfig

    base = RunConfig.from_dict({"model": "ramrec", "memory": {"neighbours": {"enabled": True}}})
    assert base.with_overrides(["model_config.neighbour_confidence=0"]).memory.neighbours.confidence == 0.0
    assert not base.with_overrides(["model_config.neighbours=false"]).memory.neighbours.enabled

"""`memrec config show MODEL`: every key of a model's run config, its default and its meaning, each
meaning written once (the comment on the field, or memrec.config.KEY_HELP for a model field without one)."""
from __future__ import annotations

import dataclasses

import pytest

from memrec.cli import main
from memrec.config import KEY_HELP, RunConfig, field_comments
from memrec.models import MODELS, model_config_class


def flat(raw: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in raw.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) and key != "columns" else {f"{prefix}{key}": value})
    return out


def shown(capsys, argv) -> dict[str, tuple[str, str]]:
    """``{key: (value, meaning)}`` read from the columns under the KEY, VALUE and MEANING headings."""
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"# {argv[2]}: every key, its value")
    value_at, meaning_at = lines[1].index("VALUE"), lines[1].index("MEANING")
    return {line[:value_at].strip(): (line[value_at:meaning_at].strip(), line[meaning_at:].strip()) for line in lines[2:]}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_key_is_listed_with_its_default_and_a_meaning(model, capsys):
    rows = shown(capsys, ["config", "show", model])
    defaults = flat(RunConfig(model=model).to_dict())
    assert list(rows) == list(defaults)  # every key, in the config's order
    for key, value in defaults.items():
        assert rows[key][0] == (value if isinstance(value, str) else str(value).lower().replace("none", "null").replace("'", '"')), key
        assert len(rows[key][1]) > 5, f"{model}: {key} has no meaning"


def test_a_frozen_config_shows_its_own_values(capsys):
    rows = shown(capsys, ["config", "show", "sasrec", "--dataset", "ml-100k"])
    assert rows["train.patience"][0] == "15" and rows["model"][0] == "sasrec"
    assert shown(capsys, ["config", "show", "sasrec"])["train.patience"][0] == "20"


def test_every_help_entry_serves_a_field_without_its_own_comment():
    """A field's comment wins over KEY_HELP: an entry every field of that name comments itself is dead."""
    classes = {model_config_class(m) for m in MODELS}
    uncommented = {f.name for cls in classes for f in dataclasses.fields(cls) if f.name not in field_comments(cls)}
    assert set(KEY_HELP) <= uncommented, f"drop from KEY_HELP: {sorted(set(KEY_HELP) - uncommented)}"


def test_an_unknown_model_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["config", "show", "bert4rec"])
    assert "invalid choice: 'bert4rec'" in capsys.readouterr().err

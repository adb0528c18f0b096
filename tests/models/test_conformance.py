"""Every registered model, with and without its memory, passes the conformance suite (memrec.testing)
on real ML-100K histories, and its checkpoints keep its scores."""
import dataclasses

import pytest
import torch

from memrec.config import RunConfig
from memrec.errors import UnknownItemError
from memrec.testing import CHECKS, Subject, conformance_cases, run_check
from memrec.train.checkpoint import load_checkpoint, save_checkpoint

MAX_LEN = 10
CASES = conformance_cases()


@pytest.fixture(scope="module", params=CASES, ids=[case.id for case in CASES])
def case(request):
    return request.param


@pytest.fixture(scope="module")
def subject(case, ml100k):
    return Subject(case.factory, ml100k, max_len=MAX_LEN, memory=case.memory, name=case.id)


@pytest.mark.parametrize("check", CHECKS)
def test_conformance(subject, check):
    if not run_check(check, subject):
        pytest.skip(f"{check} does not apply to {subject.name}")


def test_checkpoints_keep_scores_config_and_vocabulary(case, subject, ml100k, tmp_path):
    model, batch = subject.model(), subject.batch()  # memories filled where the case has memory
    config = RunConfig.from_dict({"model": case.model, "data": {"max_len": MAX_LEN}, "model_config": dataclasses.asdict(case.config)})
    save_checkpoint(tmp_path / "m.pt", model, config, ml100k)
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert torch.equal(loaded.model.score_all(batch), model.score_all(batch))
    assert loaded.config == config and loaded.item_ids == ml100k.item_ids
    loaded.check_dataset(ml100k)


def test_unknown_raw_item_ids_are_refused(ml100k):
    with pytest.raises(UnknownItemError, match="unknown item 'no-such-movie'"):
        ml100k.item_index("no-such-movie")

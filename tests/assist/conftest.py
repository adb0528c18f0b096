"""Fixtures for the assistant tests: a small real slice of Amazon Scientific, encoded once per session.

The slice keeps the first 80 users with at least 4 interactions (their real sequences and item texts)
and is written in the same split-file format as the shared data set, so every test (and the command
line) reads it through memrec's own data layer. Its ~500 items encode in seconds with the packaged MiniLM.
"""
from __future__ import annotations

import pytest

SLICE_USERS = 80


@pytest.fixture(scope="session")
def scientific(shared_data):
    from memrec.config import DataConfig
    from memrec.data import load_dataset

    if not (shared_data / "amazon-scientific" / "Scientific.test.inter").exists():
        pytest.skip("amazon-scientific not found in the shared data")
    return load_dataset(DataConfig(dataset="amazon-scientific", data_dir=str(shared_data), download=False))


@pytest.fixture(scope="session")
def small_scientific(scientific, tmp_path_factory):
    """A folder with Scientific.{valid,test}.inter and Scientific.text for 80 real users."""
    ds = scientific
    folder = tmp_path_factory.mktemp("scientific-slice")
    users = [u for u, seq in zip(ds.user_ids, ds.sequences) if len(seq) >= 4][:SLICE_USERS]
    items = set()
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    valid, test = [header], [header]
    for u in users:
        seq = [ds.item_ids[i] for i in ds.sequence(u)]
        items.update(seq)
        valid.append(f"{u}\t{' '.join(seq[:-2])}\t{seq[-2]}\n")
        test.append(f"{u}\t{' '.join(seq[:-1])}\t{seq[-1]}\n")
    (folder / "Scientific.valid.inter").write_text("".join(valid))
    (folder / "Scientific.test.inter").write_text("".join(test))
    texts = ["item_id:token\ttext:token_seq\n"] + [f"{i}\t{ds.items.text[ds.item_index(i)]}\n" for i in sorted(items)]
    (folder / "Scientific.text").write_text("".join(texts))
    return folder


@pytest.fixture(scope="session")
def small_config(small_scientific):
    from memrec.assist.evaluate import EvalConfig

    return EvalConfig(dataset=str(small_scientific), num_queries=30, num_train=40, tallrec=None)


@pytest.fixture(scope="session")
def small_setup(small_config):
    """(data set, split, query set, catalogue, cached encoder), built once."""
    from memrec.assist.evaluate import scientific_setup

    return scientific_setup(small_config)


@pytest.fixture(scope="session")
def reasoner(small_setup):
    from memrec.assist.deterministic import DeterministicReasoner

    return DeterministicReasoner(documents=small_setup[3].texts)


@pytest.fixture(scope="session")
def small_memory(small_setup, reasoner):
    from memrec.assist.evaluate import scientific_memory

    _, _, queries, catalog, encode = small_setup
    return scientific_memory(queries, reasoner, catalog, encode)

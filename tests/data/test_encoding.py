"""A data file that is not text in the expected encoding is one NotTextError naming the file, the line
and the byte, whichever reader (and whichever of its files) reads it; a UTF-8 byte order mark is text."""
import json

import pytest

from memrec.config import DataConfig
from memrec.data import load_dataset
from memrec.errors import DataFormatError, MemrecError, NotTextError

LATIN1 = "u1 i1 i2\nu2 caf\xe9 i1\n".encode("latin-1")  # é is byte 15 (from 0), on line 2
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


def load(path):
    return load_dataset(DataConfig(dataset=str(path), download=False))


def refused(path, named=None) -> NotTextError:
    with pytest.raises(NotTextError) as caught:
        load(path)
    error = caught.value
    assert isinstance(error, DataFormatError) and isinstance(error, MemrecError)  # the CLI's one line, exit 2
    assert error.path == str(named or path) and "\n" not in str(error)
    return error


def test_a_latin1_file_names_its_first_non_utf8_byte(tmp_path):
    path = tmp_path / "shop.txt"  # s3rec lines
    path.write_bytes(LATIN1)
    error = refused(path)
    assert error.line == 2 and str(error) == f"{path}, line 2: byte 15 (0xe9) is not utf-8 text; expected a utf-8 text file"


def test_a_binary_file_is_refused_in_every_format(tmp_path):
    for name in ("image.txt", "image.inter", "image.json"):  # s3rec, atomic, json
        path = tmp_path / name
        path.write_bytes(PNG)
        assert "byte 0 (0x89) is not utf-8 text" in str(refused(path))
    nul = tmp_path / "nul.inter"  # valid UTF-8, but a NUL byte is no text file's
    nul.write_bytes(b"user_id:token\titem_id:token\nu1\ti\x00\n")
    error = refused(nul)
    assert error.line == 2 and "byte 32 is a NUL byte: this is a binary file, expected utf-8 text" in str(error)


def test_side_and_split_files_are_checked_as_the_interactions_are(tmp_path):
    inter = tmp_path / "toy" / "toy.inter"
    inter.parent.mkdir()
    inter.write_text("user_id:token\titem_id:token\nu1\ti1\nu1\ti2\n")
    (tmp_path / "toy" / "toy.item").write_bytes("item_id:token\ttitle:token_seq\ni1\tAm\xe9lie\n".encode("latin-1"))
    assert refused(tmp_path / "toy", tmp_path / "toy" / "toy.item").line == 2
    split = tmp_path / "split"
    split.mkdir()
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    (split / "s.valid.inter").write_text(head + "u\t1 2\t3\n")
    (split / "s.test.inter").write_bytes(PNG)
    refused(split, split / "s.test.inter")
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "train_sequences.json").write_text(json.dumps({"u": [1, 2]}))
    (seed / "val_sequences.json").write_bytes(b'{"u": [3]}\xff')
    refused(seed, seed / "val_sequences.json")


def test_grouplens_item_titles_are_latin1_but_a_binary_item_file_is_refused(tmp_path):
    (tmp_path / "u.data").write_text("1\t10\t5\t100\n1\t20\t4\t200\n")
    (tmp_path / "u.genre").write_text("Drama|0\nComedy|1\n")
    (tmp_path / "u.item").write_bytes("10|Am\xe9lie (2001)|x|y|z|1|0\n20|Heat|x|y|z|0|1\n".encode("latin-1"))
    ds = load(tmp_path)
    assert ds.items.text[ds.item_index("10")] == "Amélie (2001). Drama"  # ML-100K's own encoding
    (tmp_path / "u.item").write_bytes(b"10|A\x00|x|y|z|1|0\n")
    assert "expected latin-1 text" in str(refused(tmp_path, tmp_path / "u.item"))


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_id(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffu1 i1 i2\nu2 i2 i3\n".encode("utf-8"))
    assert load(path).user_ids[:2] == ["u1", "u2"]
    atomic = tmp_path / "bom.inter"
    atomic.write_bytes("\ufeffuser_id:token\titem_id:token\nu1\ti1\n".encode("utf-8"))
    assert load(atomic).item_ids[1:] == ["i1"]

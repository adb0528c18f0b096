"""Request sets: the synthetic Scientific set (no leakage), TALLRec and Amazon-C4 loaders."""
from __future__ import annotations

import json

import pytest

from memrec.assist.deterministic import terms
from memrec.assist.queries import SCIENTIFIC_TOP, load_c4, load_tallrec, parse_scientific_text, scientific_queries
from memrec.data import split_dataset
from memrec.errors import DataFormatError


def test_no_leakage_into_history_memory_or_request(small_setup, small_memory):
    ds, split, queries, catalog, _ = small_setup
    assert queries.queries
    for q in queries.queries:
        seq = [ds.item_ids[i] for i in ds.sequence(q.user)]
        assert q.synthetic
        assert q.target == seq[-1]
        assert list(q.history) == seq[:-2]  # training items only: no validation or test item
        assert small_memory.history(q.user) == list(q.history)
        doc = queries.items[q.target]
        allowed = set(terms(doc.path)) | set(terms(doc.brand))
        leaked = (set(terms(q.text)) & set(terms(doc.title))) - allowed
        assert not leaked, (q.text, doc.title)
        assert doc.title.lower() not in q.text.lower()
        for c in small_memory.chunks(q.user):
            if c.kind == "record":
                assert c.text != catalog.text_of(q.target) or q.target in q.history


def test_global_memory_requests_never_use_an_evaluated_user_or_target(small_setup):
    queries = small_setup[2]
    users = {q.user for q in queries.queries}
    targets = {q.target for q in queries.queries}
    assert queries.train
    assert not users & {q.user for q in queries.train}
    assert not targets & {q.target for q in queries.train}


def test_query_set_is_deterministic(small_setup):
    ds, split, queries, _, _ = small_setup
    again = scientific_queries(ds, split_dataset(ds), 30, 40, seed=0)
    assert again.queries == queries.queries and again.train == queries.train
    other = scientific_queries(ds, split, 30, 40, seed=1)
    assert [q.qid for q in other.queries] != [q.qid for q in queries.queries]


def test_every_category_path_has_a_known_top_category(scientific):
    texts = [t for t in scientific.items.text[1:] if ". Industrial & Scientific" in t]
    assert len(texts) > 4000
    assert all(parse_scientific_text(t).top in SCIENTIFIC_TOP for t in texts)


def test_tallrec_file(shared_data, tmp_path):
    examples = load_tallrec(shared_data / "tallrec-movie" / "test.json")
    assert len(examples) == 1000 and sum(e.label for e in examples) == 528
    assert all(e.target and e.liked is not None for e in examples)
    (tmp_path / "bad.json").write_text(json.dumps([{"input": "no titles", "output": "Maybe"}]))
    with pytest.raises(DataFormatError, match="bad.json: example 0"):
        load_tallrec(tmp_path / "bad.json")


def _write_c4(folder, items_lines, csv_text):
    (folder / "sampled_item_metadata_1M.jsonl").write_text("\n".join(items_lines) + "\n")
    (folder / "test.csv").write_text(csv_text)


def test_c4_loader_reads_queries_and_items(tmp_path):
    items = [json.dumps({"item_id": "B1", "category": "Home", "metadata": "A soft cotton towel"}),
             json.dumps({"item_id": "B2", "category": "Tools", "metadata": {"title": "Hammer", "brand": "Acme"}})]
    csv_text = 'qid,query,item_id,user_id,ori_rating,ori_review\n0,"I want a towel, soft",B1,U1,5,"great towel"\n1,a hammer,B2,U2,,ok\n'
    _write_c4(tmp_path, items, csv_text)
    rows, catalog = load_c4(tmp_path)
    assert [r.query.qid for r in rows] == ["0", "1"]
    assert rows[0].query.text == "I want a towel, soft" and rows[0].query.category == "Home" and rows[0].query.target == "B1"
    assert rows[0].rating == 5.0 and rows[1].rating is None and rows[0].review == "great towel"
    assert catalog["B2"] == ("Tools", "title: Hammer brand: Acme")


def test_c4_malformed_lines_name_file_and_line(tmp_path):
    good = json.dumps({"item_id": "B1", "category": "Home", "metadata": "towel"})
    _write_c4(tmp_path, [good, '{"item_id": "B2", "metadata": '], "qid,query,item_id,user_id,ori_rating,ori_review\n")
    with pytest.raises(DataFormatError, match=r"sampled_item_metadata_1M.jsonl, line 2: expected a JSON object"):
        load_c4(tmp_path)
    _write_c4(tmp_path, [good], "qid,query,item_id,user_id,ori_rating,ori_review\n0,towel,B1,U1,5,ok\n1,towel,B1\n")
    with pytest.raises(DataFormatError, match=r"test.csv, line 3: expected 6 fields, got 3"):
        load_c4(tmp_path)
    _write_c4(tmp_path, [good], "qid,query,item_id,user_id,ori_rating,ori_review\n0,towel,B1,U1,five,ok\n")
    with pytest.raises(DataFormatError, match=r"test.csv, line 2: ori_rating must be a number"):
        load_c4(tmp_path)
    _write_c4(tmp_path, [good], "qid,query,user_id\n")
    with pytest.raises(DataFormatError, match=r"missing \['item_id', 'ori_rating', 'ori_review'\]"):
        load_c4(tmp_path)


def test_request_detail_levels_name_less_and_keep_users_targets_and_histories(small_setup):
    from memrec.assist.queries import DETAILS, TEMPLATES, TOP_TEMPLATES

    ds, split, path, _, _ = small_setup
    sets = {d: scientific_queries(ds, split, 30, 40, seed=0, detail=d) for d in DETAILS}
    assert [q.text for q in sets["path"].queries] == [q.text for q in path.queries]  # the default is "path"
    template_words = {t for tpl in TEMPLATES + TOP_TEMPLATES for t in terms(tpl.format(what="", top=""))}
    for detail, qs in sets.items():
        assert [(q.qid, q.user, q.target, q.history, q.category) for q in qs.queries] == \
               [(q.qid, q.user, q.target, q.history, q.category) for q in path.queries]
        assert [q.target for q in qs.train] == [q.target for q in path.train] and qs.histories == path.histories
        assert all(q.synthetic for q in qs.queries + qs.train)
        assert f"detail '{detail}'" in qs.description or detail == "path"
        for q in qs.queries + qs.train:
            doc = qs.items[q.target]
            named = set(terms(q.text)) - template_words
            if detail == "top":
                assert named == set(terms(doc.top)), q.text
            elif detail == "leaf":
                assert named <= set(terms(doc.path)) and "preferably from" not in q.text, q.text
    vocabulary = {d: {t for q in qs.queries for t in terms(q.text)} for d, qs in sets.items()}
    assert vocabulary["top"] < vocabulary["leaf"] <= vocabulary["path"]  # the vaguer levels say less
    assert any("preferably from" in q.text for q in path.queries + path.train)


def test_unknown_request_detail_is_refused(small_setup):
    from memrec.assist.queries import request_for
    from memrec.errors import ConfigError

    ds, split, queries, _, _ = small_setup
    with pytest.raises(ConfigError, match="unknown request detail 'title'"):
        scientific_queries(ds, split, 3, 3, seed=0, detail="title")
    with pytest.raises(ConfigError, match="expected one of"):
        request_for(queries.items[queries.queries[0].target], "q", "vague")

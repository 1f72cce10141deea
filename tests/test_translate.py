"""recipes/translate_dates.py: dates in many styles and languages → ISO 8601 with an encoder-decoder transformer,
run end to end on its small budget; and the task's rule, style by style."""
import datetime
import json
import os
from importlib.util import module_from_spec, spec_from_file_location

import numpy as np
import pytest

import tidu as td

RECIPE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes", "translate_dates.py")
_spec = spec_from_file_location("translate_dates", RECIPE)
T = module_from_spec(_spec)
_spec.loader.exec_module(T)


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def test_each_style_writes_the_documented_form():
    day = datetime.date(2021, 3, 3)  # a Wednesday
    expected = {
        "en_day_month": "3 March 2021", "en_month_day": "March 3, 2021", "en_month_ordinal": "March 3rd, 2021",
        "en_the_ordinal_of": "the 3rd of March 2021", "en_abbrev": "Mar 3, 2021", "oracle": "03-MAR-2021",
        "en_weekday": "Wednesday, March 3, 2021", "us_slash": "03/03/2021", "us_slash_short": "3/3/2021",
        "eu_dot": "03.03.2021", "year_slash": "2021/03/03", "iso_basic": "20210303", "iso": "2021-03-03",
        "fr_le": "le 3 mars 2021", "fr_weekday": "mercredi 3 mars 2021", "de": "3. März 2021",
        "de_am": "am 3. März 2021", "es_el": "el 3 de marzo de 2021", "es": "3 de marzo de 2021",
        "it": "3 marzo 2021", "pt": "3 de março de 2021", "nl": "3 maart 2021", "zh_ja": "2021年3月3日",
        "ko": "2021년 3월 3일"}
    assert {name: style(day) for name, style in T.STYLES.items()} == expected
    # numeric styles are never ambiguous: US slashes are month/day, European dots day.month
    may_4 = datetime.date(1999, 5, 4)
    assert T.STYLES["us_slash"](may_4) == "05/04/1999" and T.STYLES["eu_dot"](may_4) == "04.05.1999"
    assert T.STYLES["fr_le"](datetime.date(2021, 8, 1)) == "le 1er août 2021"
    assert [T.ordinal(d) for d in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"]


def test_held_out_dates_are_disjoint_and_every_text_encodes():
    train, test = T.split_days()
    assert len(train) + len(test) == (T.LAST - T.FIRST).days + 1 == 73049
    assert len(test) == 3652 and not np.intersect1d(train, test).size
    rows = T.examples(test[:200], np.random.default_rng(0))
    assert {style for _, _, style in rows} == set(T.STYLES)
    for src, iso, _ in rows:
        assert datetime.date.fromisoformat(iso) and set(src) <= set(T.SRC_CHARS)
    src, pad, tgt_in, tgt_out = T.encode_batch([r[0] for r in rows], [r[1] for r in rows])
    assert src.shape == pad.shape and (pad == (src == T.PAD)).all()
    assert tgt_in.shape == tgt_out.shape == (200, 11)
    assert (tgt_in[:, 0] == T.BOS).all() and (tgt_out[:, -1] == T.EOS).all()
    assert (tgt_in[:, 1:] == tgt_out[:, :-1]).all()  # teacher forcing: the input is the target shifted right
    assert T.decode_ids(tgt_out[0]) == rows[0][1]


def test_recipe_on_a_small_budget(tmp_path, capsys):
    pytest.importorskip("sacrebleu")
    # Full budget: exact match 1.000 greedy and beam (the recipe's docstring). Small budget (250 steps of 64):
    # 0.40-0.51 exact match and BLEU 74-81 over seeds 0-2; 0.25 and 60 leave a margin.
    out = tmp_path / "run"
    r = T.main(["--budget", "small", "--out", str(out), "--quiet"])
    for method in ("greedy", "beam"):
        assert r[method]["exact_match"] >= 0.25, r[method]
        assert r[method]["bleu"] >= 60, r[method]
        assert r[method]["bleu_signature"].startswith("nrefs:1")
        assert set(r[method]["exact_match_per_style"]) <= set(T.STYLES)
    assert r["n_test"] == 300 and r["n_test_days"] == 3652
    printed = capsys.readouterr().out
    assert f"greedy: exact match {r['greedy']['exact_match']:.4f}" in printed
    saved = json.loads((out / "results.json").read_text())
    assert saved["greedy"]["exact_match"] == r["greedy"]["exact_match"]
    # the saved weights give the same translations
    model = T.DateTranslator()
    model.load_state_dict(td.load(str(out / "model.safetensors")))
    test = T.examples(np.random.default_rng(1).choice(T.split_days()[1], 300, replace=False),
                      np.random.default_rng(2))[:40]
    preds = T.translate(model, [s for s, _, _ in test])
    assert np.mean([p == t for p, (_, t, _) in zip(preds, test)]) >= 0.2
    assert all(len(p) <= 10 and set(p) <= set("0123456789-") for p in preds)

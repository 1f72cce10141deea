"""`tidu report RUN_DIR`: one self-contained HTML page (parsed here, and rendered by headless Chromium
when one is installed) and its Markdown twin; fairness in `tidu evaluate --sensitive`."""
import base64
import json
import re
import shutil
import subprocess
import textwrap
from html.parser import HTMLParser

import numpy as np
import pytest

pytest.importorskip("pandas")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")
pytest.importorskip("dp_accounting")

import pandas as pd  # noqa: E402

from tidu import config  # noqa: E402
from tidu.cli import main  # noqa: E402
from helpers import run_cli as cli  # noqa: E402
from tidu.report import SECTIONS, sensitive_groups  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
VOID = {"meta", "img", "br", "hr", "link", "input", "source", "col", "area", "base", "wbr"}


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def train(tmp, name, text, *flags):
    path = tmp / f"{name}.toml"
    path.write_text(textwrap.dedent(text))
    assert main(["train", str(path), "--out", str(tmp / name), *flags]) == 0
    return tmp / name


@pytest.fixture(scope="module")
def private_run(tmp_path_factory):
    """A private breast_cancer run with pictures and a configured sensitive column."""
    tmp = tmp_path_factory.mktemp("report")
    return train(tmp, "cancer", """
        seed = 0
        [data]
        source = "breast_cancer"
        split = [0.7, 0.15, 0.15]
        [model]
        hidden = [8]
        activation = "tanh"
        [optimizer]
        name = "sgd"
        lr = 0.05
        momentum = 0.9
        [train]
        epochs = 3
        [privacy]
        noise_multiplier = 1.0
        [fairness]
        sensitive = "mean radius"
        pos_label = "malignant"
        """)


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A tiny table whose group names and categories hold HTML, trained without pictures."""
    tmp = tmp_path_factory.mktemp("html")
    rng = np.random.default_rng(0)
    n = 240
    group = rng.choice(["<script>alert(1)</script>", "a & b", "plain"], n)
    x = rng.normal(size=n)
    df = pd.DataFrame({"x": x, "kind": rng.choice(["<b>bold</b>", "q\"uote"], n), "group": group,
                       "label": np.where(x + 0.5 * (group == "plain") > 0, "yes", "no")})
    df.to_csv(tmp / "t.csv", index=False)
    return train(tmp, "t", """
        [data]
        source = "t.csv"
        target = "label"
        [preprocess]
        drop = ["group"]
        [model]
        hidden = [8]
        [optimizer]
        lr = 0.01
        [train]
        epochs = 2
        """, "--no-plots")


class Checker(HTMLParser):
    """Parses a page and checks that every element is closed in order; collects ids, images and links."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.ids, self.images, self.links, self.tags = [], [], [], [], [], []
        self.text = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "img":
            self.images.append(a.get("src", ""))
        for key in ("href", "src"):
            if key in a and tag != "img":
                self.links.append(a[key])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def check_html(path):
    source = path.read_text(encoding="utf-8")
    parser = Checker()
    parser.feed(source)
    parser.close()
    assert source.startswith("<!DOCTYPE html>")
    assert not parser.errors and parser.stack == [], (parser.errors, parser.stack)
    assert {"script", "link", "iframe", "object"}.isdisjoint(parser.tags)
    assert all(link.startswith("#") for link in parser.links), parser.links  # nothing from elsewhere
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG
    return source, parser


def test_report_of_a_private_run_has_every_section_and_is_self_contained(private_run, capsys):
    rc, out, _ = cli(capsys, "report", private_run)
    assert rc == 0
    html_path, md_path = (private_run / "report" / name for name in ("report.html", "report.md"))
    assert out.split() == [str(html_path), str(md_path)]
    source, parser = check_html(html_path)
    assert [i for i in parser.ids if i in SECTIONS] == list(SECTIONS)
    text = " ".join(parser.text)
    for title in SECTIONS.values():
        assert title in text
    summary = json.loads((private_run / "summary.json").read_text())
    assert "569 rows" in text and "malignant" in text                                 # data summary
    words = " ".join(text.split())
    for split, n in summary["sizes"].items():                                         # rows and class balance
        assert re.search(rf"{split} {n} \d+ \(\d+%\) \d+ \(\d+%\)", words), split
    assert f"{summary['test']['accuracy']:.4f}" in text                              # test metrics
    history = json.loads((private_run / "history.json").read_text())["history"]
    assert "noise multiplier σ" in text and f"{history['epsilon'][-1]:.4f}" in text   # privacy budget
    assert "Integrated gradients" in text and "Top attributions" in text             # attributions
    assert "Per-group metrics for 'mean radius'" in text and "positive class: 'malignant'" in text
    assert "demographic parity difference" in text and "Q1 [" in text                # fairness, quartiles
    assert len(parser.images) >= 6  # loss, accuracy, lr, confusion matrices, ε, attributions
    md = md_path.read_text(encoding="utf-8")
    for title in SECTIONS.values():
        assert f"\n## {title}\n" in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links and all((md_path.parent / link).exists() for link in links)
    assert "| group | count | accuracy | selection rate | TPR | FPR | AUC |" in md


def test_report_renders_in_headless_chromium(private_run, tmp_path, capsys):
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "chromium-headless-shell",
                                             "google-chrome", "headless_shell") if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no Chromium installed (apt-get install chromium-headless-shell); the HTML parser test stands")
    page = private_run / "report" / "report.html"
    if not page.exists():
        assert cli(capsys, "report", private_run)[0] == 0
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,2000"]
    shot = tmp_path / "report.png"
    done = subprocess.run(args + [f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == PNG and shot.stat().st_size > 20000
    dom = subprocess.run(args + ["--dump-dom", page.as_uri()], capture_output=True, timeout=60, text=True)
    assert dom.returncode == 0 and all(f'<section id="{k}">' in dom.stdout for k in SECTIONS)


def test_text_is_escaped_and_a_run_without_pictures_or_privacy_still_reports(table_run, tmp_path, capsys):
    rc, _, _ = cli(capsys, "report", table_run, "--sensitive", "group", "--out", tmp_path)
    assert rc == 0
    source, parser = check_html(tmp_path / "report.html")
    assert "<script>alert(1)</script>" not in source and "&lt;script&gt;alert(1)&lt;/script&gt;" in source
    assert "<b>bold</b>" not in source and "a &amp; b" in source
    text = " ".join(parser.text)
    assert "<script>alert(1)</script>" in text  # shown to the reader as text
    assert "Not private" in text and "--no-plots" in text and "Per-group metrics for 'group'" in text
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "## Fairness" in md and "attributions.png" in md


def test_report_errors(table_run, tmp_path, capsys):
    rc, _, err = cli(capsys, "report", table_run, "--sensitive", "nope")
    assert rc == 1 and "--sensitive: unknown column 'nope'; the run's table has columns" in err
    rc, _, err = cli(capsys, "report", tmp_path)
    assert rc == 1 and "is not a tidu run folder" in err


# --- fairness in tidu evaluate ---

def test_evaluate_sensitive_prints_group_metrics_that_match_a_hand_count(table_run, capsys):
    from tidu.cli.evaluate import _test_rows
    from tidu.cli.train import Run
    rc, out, _ = cli(capsys, "evaluate", table_run, "--sensitive", "group", "--json")
    assert rc == 0
    fair = json.loads(out)["fairness"]
    assert fair["sensitive"] == "group" and fair["positive_class"] == "yes"
    # by hand: the test rows, the model's predictions, one group at a time
    run = Run(table_run)
    rows = _test_rows(run)
    X, y = run.preprocessor.transform(rows)
    pred = run.trainer.predict_classes(X)
    groups = rows["group"].to_numpy()
    for g, m in fair["by_group"].items():
        keep = groups == g
        yt, yp = y[keep], pred[keep]
        assert m["count"] == keep.sum() and m["accuracy"] == pytest.approx((yt == yp).mean())
        assert m["selection_rate"] == pytest.approx((yp == 1).mean())
        assert m["tpr"] == pytest.approx(((yp == 1) & (yt == 1)).sum() / (yt == 1).sum())
        assert m["fpr"] == pytest.approx(((yp == 1) & (yt == 0)).sum() / (yt == 0).sum())
    rates = [m["selection_rate"] for m in fair["by_group"].values()]
    assert fair["demographic_parity_difference"] == pytest.approx(max(rates) - min(rates))
    tpr, fpr = ([m[k] for m in fair["by_group"].values()] for k in ("tpr", "fpr"))
    assert fair["equalized_odds_difference"] == pytest.approx(max(max(tpr) - min(tpr), max(fpr) - min(fpr)))
    rc, out, _ = cli(capsys, "evaluate", table_run, "--sensitive", "group", "--pos-label", "no")
    assert rc == 0 and "fairness for the groups of 'group' (positive class: 'no')" in out
    assert "demographic parity difference: " in out and "equalized odds difference: " in out
    for name in ("selection rate", "TPR", "FPR", "accuracy"):
        assert name in out


def test_evaluate_uses_the_configured_sensitive_column(private_run, capsys):
    rc, out, _ = cli(capsys, "evaluate", private_run)
    assert rc == 0 and "fairness for the groups of 'mean radius' (positive class: 'malignant')" in out
    assert out.count("\nQ") == 4  # four quartile groups


def test_sensitive_groups_and_the_fairness_config():
    assert sensitive_groups(pd.Series([1, 0, None])).tolist() == ["1", "0", "missing"]
    assert len(set(sensitive_groups(np.linspace(0, 1, 50)))) == 4
    base = {"data": {"source": "breast_cancer"}}
    cfg = config.validate({**base, "fairness": {"sensitive": "mean radius"}})
    assert cfg["fairness"] == {"sensitive": "mean radius", "pos_label": None} and config.validate(cfg) == cfg
    assert config.validate(base)["fairness"] is None
    with pytest.raises(config.ConfigError, match="fairness.sensitive: missing"):
        config.validate({**base, "fairness": {}})
    with pytest.raises(config.ConfigError, match="group fairness metrics are for classifiers"):
        config.validate({"data": {"source": "diabetes"}, "fairness": {"sensitive": "age"}})
    with pytest.raises(config.ConfigError, match="fairness.sensitive: unknown column 'nope'"):
        config.prepare(config.validate({**base, "fairness": {"sensitive": "nope"}, "train": {"epochs": 1}}))
    with pytest.raises(config.ConfigError, match="fairness.pos_label: unknown class 'maybe'"):
        config.prepare(config.validate({**base, "fairness": {"sensitive": "mean radius", "pos_label": "maybe"}}))

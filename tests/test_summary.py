"""tidu.nn.summary (the layer table) and tidu.nn.to_mermaid / tidu graph (the architecture diagram)."""
import re

import numpy as np
import pytest

import tidu as td
import tidu.nn as nn
from tidu.nn.summary import summary, to_mermaid


def n_params(model, trainable=None):
    return sum(p.numel() for p in model.parameters() if trainable is None or p.requires_grad == trainable)


def mlp():
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.1), nn.Linear(256, 10))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


class TwoInputs(nn.Module):
    """Several inputs, a tuple output, a ModuleList, a parameter of its own and one shared layer."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(td.ones(6))
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(6, 6), nn.Tanh()) for _ in range(2)])
        self.head = nn.Linear(6, 2)
        self.tied = self.head  # the same layer under two names: its parameters count once
        self.unused = nn.Linear(3, 3)

    def forward(self, a, b):
        x = a * self.scale + b
        for block in self.blocks:
            x = x + block(x)  # residual
        return self.head(x), self.tied(x).sum(dim=1)


# --- summary ---

def test_mlp_counts_shapes_and_memory(capsys):
    model = mlp()
    s = summary(model, td.zeros(5, 64))
    printed = capsys.readouterr().out
    assert printed.strip() == str(s)
    assert s.total_params == n_params(model) == 64 * 256 + 256 + 256 * 10 + 10
    assert s.trainable_params == s.total_params and s.frozen_params == 0
    assert [(r.name, r.type, r.output_shape) for r in s.rows] == [
        ("", "Sequential", (5, 10)), ("0", "Linear", (5, 256)), ("1", "ReLU", (5, 256)), ("2", "Dropout", (5, 256)),
        ("3", "Linear", (5, 10))]
    assert [r.trainable for r in s.rows] == [0, 64 * 256 + 256, 0, 0, 2570]
    assert s.param_bytes == 4 * s.total_params
    assert s.input_bytes == 5 * 64 * 4
    assert 5 * (256 + 10) * 4 <= s.activation_bytes <= 5 * (3 * 256 + 10) * 4
    assert "Total params: 19,210 (75.04 KiB)" in printed
    assert "3 (Linear)" in printed and "(5, 256)" in printed


def test_cnn_shapes_frozen_and_buffers():
    model = cnn()
    model[0].freeze()
    s = summary(model, td.zeros(2, 1, 12, 12), print_fn=None)
    shapes = {r.name: r.output_shape for r in s.rows}
    assert shapes == {"": (2, 10), "0": (2, 8, 12, 12), "1": (2, 8, 12, 12), "2": (2, 8, 12, 12),
                      "3": (2, 8, 6, 6), "4": (2, 16, 4, 4), "5": (2, 16, 4, 4), "6": (2, 16, 1, 1), "7": (2, 16),
                      "8": (2, 10)}
    assert s.frozen_params == n_params(model, trainable=False) == 8 * 9 + 8
    assert s.trainable_params == n_params(model, trainable=True)
    assert s.total_params == n_params(model)
    assert s.buffer_bytes == sum(b.data.nbytes for b in model.buffers()) > 0
    assert "Frozen params: 80" in str(s)


def test_summary_leaves_the_model_as_it_was():
    model = cnn()
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    summary(model, td.randn(4, 1, 12, 12) * 3 + 1, print_fn=None)
    assert model.training and all(m.training for m in model.modules())
    assert all(np.array_equal(before[k], v.numpy()) for k, v in model.state_dict().items())  # no BN update
    model.eval()
    summary(model, td.zeros(1, 1, 12, 12), print_fn=None)
    assert not any(m.training for m in model.modules())


def test_nested_modules_several_inputs_tuple_outputs_shared_and_unused_layers():
    model = TwoInputs()
    s = summary(model, (td.zeros(3, 6), td.ones(3, 6)), print_fn=None)
    assert s.total_params == n_params(model) == 6 + 2 * 42 + 14 + 12
    rows = {(r.name, r.called): r for r in s.rows}
    assert rows[("", True)].output_shape == [(3, 2), (3,)]
    assert rows[("", True)].trainable == 6  # its own parameter
    assert rows[("blocks.1.0", True)].depth == 2 and rows[("blocks.1.0", True)].output_shape == (3, 6)
    head = [r for r in s.rows if r.name == "head"]
    assert len(head) == 2 and [r.trainable for r in head] == [14, 0]  # called twice, counted once
    assert rows[("unused", False)].trainable == 12 and rows[("unused", False)].output_shape is None
    assert "(not called)" in str(s)
    assert not any(r.name == "blocks" for r in s.rows)  # a ModuleList is a holder, not a layer


def test_keyword_input_and_no_input():
    model = mlp()
    s = summary(model, None, print_fn=None)
    assert s.total_params == n_params(model) and all(r.output_shape is None for r in s.rows)
    assert s.activation_bytes == 0 and "Forward activations" not in str(s)
    s = summary(nn.Sequential(nn.Embedding(10, 4)), td.tensor([[1, 2, 3]]), print_fn=None)
    assert s.rows[0].output_shape == (1, 3, 4) and s.total_params == 40


def test_summary_rejects_a_non_module():
    with pytest.raises(TypeError, match="summary: expected a tidu.nn.Module, got function"):
        summary(lambda x: x, td.zeros(1))


# --- Mermaid ---

NODE = re.compile(r"^\s*([A-Za-z_][\w]*)(\[|\(\[)")
EDGE = re.compile(r"^\s*(\S+?)(\(\[.*?\]\))? --> (\S+?)(\(\[.*?\]\))?$")


def check_mermaid(text):
    """A valid flowchart: header, subgraph/end balanced and nested, unique ids, edges between known ids."""
    lines = text.splitlines()
    assert re.fullmatch(r"flowchart (TD|LR)", lines[0])
    depth, ids, edges = 0, [], []
    for line in lines[1:]:
        s = line.strip()
        if s.startswith("subgraph "):
            depth += 1
            ids.append(re.match(r"subgraph (\w+)\[", s).group(1))
        elif s == "end":
            depth -= 1
            assert depth >= 0
        elif "-->" in s:
            m = EDGE.match(s)
            assert m, s
            for name, definition in ((m.group(1), m.group(2)), (m.group(3), m.group(4))):
                if definition:
                    ids.append(name)
            edges.append((m.group(1), m.group(3)))
        else:
            m = NODE.match(s)
            assert m, s
            ids.append(m.group(1))
            assert s.count('"') == 2, s  # one quoted label
    assert depth == 0
    assert len(ids) == len(set(ids)), ids
    assert all(a in ids and b in ids for a, b in edges)
    return ids, edges


def labels(text):
    return dict(re.findall(r'(n\d+)\["([^"]*)"\]', text))


def test_mermaid_of_an_mlp_without_and_with_an_example():
    model = mlp()
    text = to_mermaid(model)
    ids, edges = check_mermaid(text)
    assert list(labels(text).values()) == ["0: Linear 64→256", "1: ReLU", "2: Dropout p=0.1", "3: Linear 256→10"]
    assert edges == [("input", "n0"), ("n0", "n1"), ("n1", "n2"), ("n2", "n3"), ("n3", "output")]
    traced = to_mermaid(model, td.zeros(2, 64))
    assert check_mermaid(traced)[1] == edges
    assert 'input(["input (2, 64)"])' in traced and 'output(["output (2, 10)"])' in traced


def test_mermaid_subgraphs_and_residual_edges():
    model = TwoInputs()
    text = to_mermaid(model, (td.zeros(3, 6), td.ones(3, 6)), direction="LR")
    ids, edges = check_mermaid(text)
    assert text.startswith("flowchart LR")
    assert text.count("subgraph") == 3  # blocks, blocks.0, blocks.1
    names = {v.split(":")[0]: k for k, v in labels(text).items()}
    assert set(names) == {"blocks.0.0", "blocks.0.1", "blocks.1.0", "blocks.1.1", "head", "unused"}
    first, tanh0, second = names["blocks.0.0"], names["blocks.0.1"], names["blocks.1.0"]
    assert ("input0", first) in edges and ("input1", first) in edges  # a * scale + b
    assert (tanh0, second) in edges and ("input0", second) in edges  # the residual x + block(x)
    assert ("input1", names["head"]) in edges and (names["head"], "output0") in edges
    assert (names["head"], "output1") in edges


def test_mermaid_of_a_cnn_and_of_one_layer():
    text = to_mermaid(cnn(), td.zeros(1, 1, 8, 8))
    check_mermaid(text)
    assert "0: Conv2d 1→8, 3×3" in text and "1: BatchNorm2d 8" in text and "8: Linear 16→10" in text
    one = to_mermaid(nn.Conv2d(3, 4, 5, stride=2))
    check_mermaid(one)
    assert 'n0["Conv2d 3→4, 5×5, stride 2"]' in one


def test_mermaid_of_a_transformer_block_keeps_attention_as_one_node():
    from tidu.nn.transformer import TransformerEncoderLayer
    layer = TransformerEncoderLayer(16, 4, 32, batch_first=True)
    text = to_mermaid(layer, td.randn(2, 5, 16))
    ids, edges = check_mermaid(text)
    node = {v.split(":")[0]: k for k, v in labels(text).items()}
    assert labels(text)[node["self_attn"]] == "self_attn: MultiheadAttention 16, 4 heads"
    assert "out_proj" not in text
    assert ("input", node["self_attn"]) in edges and ("input", node["norm1"]) in edges  # post-norm residual


def test_mermaid_rejects_bad_arguments():
    with pytest.raises(TypeError, match="to_mermaid: expected a tidu.nn.Module"):
        to_mermaid("model")
    with pytest.raises(ValueError, match="direction must be one of"):
        to_mermaid(mlp(), direction="UP")


# --- tidu graph ---

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    pytest.importorskip("sklearn")
    pytest.importorskip("pandas")
    from tidu.cli import main
    tmp = tmp_path_factory.mktemp("graph")
    cfg = tmp / "iris.toml"
    cfg.write_text('seed = 0\n[data]\nsource = "iris"\n[model]\nhidden = [8]\nbatch_norm = true\n'
                   '[output]\nplots = false\n')
    assert main(["train", str(cfg), "--out", str(tmp / "run"), "--epochs", "1"]) == 0
    return tmp / "run"


def test_tidu_graph_prints_and_writes_the_flowchart(run_dir, tmp_path, capsys):
    from tidu.cli import main
    capsys.readouterr()
    assert main(["graph", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    check_mermaid(printed.strip())
    assert "0: Linear 4→8" in printed and "1: BatchNorm1d 8" in printed and 'input(["input (1, 4)"])' in printed
    out = tmp_path / "model.mmd"
    assert main(["graph", str(run_dir), "--out", str(out), "--summary"]) == 0
    said = capsys.readouterr().out
    assert f"written to {out}" in said and "Total params: 83" in said
    assert out.read_text().strip() == printed.strip()
    assert main(["graph", str(tmp_path / "nope")]) == 1
    assert "no run folder" in capsys.readouterr().err

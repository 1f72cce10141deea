"""ONNX export: every supported kind of model is exported, passes onnx.checker, and onnxruntime gives
tidu's outputs (float32, within 1e-5 of the output scale) on a batch size other than the example's."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import tidu as td  # noqa: E402
import tidu.nn as nn  # noqa: E402
from tidu.io.onnx import OnnxExportError, export_onnx  # noqa: E402
from tidu.nn.summary import _tensors  # noqa: E402

try:
    from tidu.nn.recurrent import GRU, LSTM, RNN
except ImportError:  # pragma: no cover - the recurrent layers are a separate part of tidu.nn
    RNN = LSTM = GRU = None
needs_recurrent = pytest.mark.skipif(RNN is None, reason="tidu.nn.recurrent (RNN, LSTM, GRU) is not in this build")

from tidu.nn.attention import MultiheadAttention  # noqa: E402
from tidu.nn.gpt import GPT, GPTConfig  # noqa: E402
from tidu.nn.transformer import TransformerEncoder, TransformerEncoderLayer  # noqa: E402

RNG = np.random.default_rng(0)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def ids(*shape, high=11):
    return RNG.integers(0, high, size=shape).astype(np.int64)


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_both(model, example, inputs, path, nest=False, **kw):
    """Export on ``example``, run onnxruntime and tidu on ``inputs`` (another batch size); compare."""
    model.eval()
    proto = export_onnx(model, example, path, **kw)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    sess = session(path)
    names = [i.name for i in sess.get_inputs()]
    assert len(names) == len(inputs)
    theirs = sess.run(None, dict(zip(names, inputs)))
    args = [td.tensor(a) for a in inputs]
    if nest:  # an RNN's (h_0, c_0) is one argument
        args = [args[0], tuple(args[1:])]
    with td.no_grad():
        ours = [t.numpy() for t in _tensors(model(*args))]
    assert len(theirs) == len(ours)
    for a, b in zip(theirs, ours):
        assert a.shape == b.shape and a.dtype == np.float32
        scale = max(1.0, float(np.abs(b).max()))
        assert np.abs(a - b).max() <= 1e-5 * scale, (np.abs(a - b).max(), scale)
    return proto


def batch_norm(cls, c):
    bn = cls(c)
    bn.running_mean.data[:] = randn(c)
    bn.running_var.data[:] = np.abs(randn(c)) + 0.5
    bn.weight.data[:] = randn(c)
    bn.bias.data[:] = randn(c)
    return bn


def mlp_all_activations():
    return nn.Sequential(
        nn.Linear(8, 16), batch_norm(nn.BatchNorm1d, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 16), nn.GELU(),
        nn.SiLU(), nn.Tanh(), nn.LeakyReLU(0.2), nn.ELU(0.7), nn.Softplus(2.0), nn.Mish(), nn.Hardtanh(-0.5, 0.5),
        nn.ReLU6(), nn.PReLU(16), nn.LogSigmoid(), nn.GELU("tanh"), nn.Sigmoid(), nn.Identity(), nn.Softmin(),
        nn.Linear(16, 6), nn.LogSoftmax(dim=1))


def cnn():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), batch_norm(nn.BatchNorm2d, 8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, stride=2, groups=2, dilation=2, padding=2), nn.GroupNorm(2, 8),
        nn.AvgPool2d(3, stride=1, padding=1), nn.Conv2d(8, 4, 3, padding="same", padding_mode="reflect"),
        nn.PReLU(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3), nn.Softmax(dim=-1))


def conv1d():
    return nn.Sequential(nn.Conv1d(3, 6, 3), nn.MaxPool1d(2), nn.ConvTranspose1d(6, 4, 3, stride=2, output_padding=1),
                         nn.AvgPool1d(2), nn.AdaptiveAvgPool1d(4), nn.Flatten())


def upsampler():
    return nn.Sequential(nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1),
                         nn.Conv2d(3, 2, 3, padding=1, padding_mode="replicate", bias=False), nn.Flatten(2),
                         nn.LayerNorm(64), nn.Unflatten(2, (8, 8)), nn.AdaptiveAvgPool2d((2, 4)))


def text_classifier():
    return nn.Sequential(nn.Embedding(11, 8), nn.LayerNorm(8), nn.Linear(8, 5), nn.Flatten(), nn.Linear(15, 2))


CASES = {
    "mlp": (mlp_all_activations, randn(3, 8), [randn(5, 8)]),
    "cnn": (cnn, randn(2, 3, 16, 16), [randn(3, 3, 16, 16)]),
    "conv1d": (conv1d, randn(2, 3, 17), [randn(4, 3, 17)]),
    "upsampler": (upsampler, randn(2, 4, 4, 4), [randn(1, 4, 4, 4)]),
    "embedding": (text_classifier, ids(1, 3), [ids(4, 3)]),
    "encoder": (lambda: TransformerEncoder(TransformerEncoderLayer(16, 4, 32, dropout=0.1, batch_first=True),
                                           num_layers=2, norm=nn.LayerNorm(16)), randn(2, 5, 16), [randn(3, 5, 16)]),
    "encoder_norm_first_gelu_seq_first": (
        lambda: TransformerEncoderLayer(16, 2, 32, activation="gelu", norm_first=True), randn(5, 2, 16),
        [randn(5, 4, 16)]),
    "gpt": (lambda: GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, d_model=16)), ids(1, 6),
            [ids(3, 6)]),
    "gpt_rotary_rms_relu": (
        lambda: GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, d_model=16, pos_embedding="rotary",
                              norm="rms", activation="relu", tie_weights=False)), ids(2, 5), [ids(1, 5)]),
    "gpt_sinusoidal": (
        lambda: GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=4, d_model=16,
                              pos_embedding="sinusoidal")), ids(1, 4), [ids(2, 4)]),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_export_matches_onnxruntime_on_another_batch_size(kind, tmp_path):
    td.manual_seed(0)
    make, example, inputs = CASES[kind]
    model = make()
    proto = run_both(model, example, inputs, tmp_path / f"{kind}.onnx")
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    batch_axis = 1 if kind == "encoder_norm_first_gelu_seq_first" else 0
    assert dims[batch_axis].dim_param == "batch"
    assert all(d.dim_value > 0 for i, d in enumerate(dims) if i != batch_axis)
    assert model.training is False  # left as it was (eval, set above)


def test_multihead_attention_outputs_and_weights(tmp_path):
    td.manual_seed(1)
    mha = MultiheadAttention(16, 4)  # (L, N, E): the batch is axis 1
    x = randn(5, 2, 16)
    proto = run_both(mha, (x, x, x), [randn(5, 3, 16)] * 3, tmp_path / "mha.onnx")
    assert [o.name for o in proto.graph.output] == ["output_0", "output_1"]
    assert [d.dim_param or d.dim_value for d in proto.graph.output[1].type.tensor_type.shape.dim] == ["batch", 5, 5]


@needs_recurrent
@pytest.mark.parametrize("cls,options", [
    ("LSTM", dict(num_layers=2, bidirectional=True)),
    ("GRU", dict(num_layers=2, bidirectional=True, batch_first=True)),
    ("RNN", dict(nonlinearity="relu")),
    ("RNN", dict(num_layers=2, bias=False, batch_first=True)),
])
def test_recurrent_layers(cls, options, tmp_path):
    td.manual_seed(2)
    model = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}[cls](5, 7, **options)
    first = options.get("batch_first", False)
    example, other = (randn(2, 6, 5), randn(3, 6, 5)) if first else (randn(6, 2, 5), randn(6, 3, 5))
    run_both(model, example, [other], tmp_path / "rnn.onnx")


@needs_recurrent
def test_recurrent_layers_with_initial_states(tmp_path):
    td.manual_seed(3)
    lstm = LSTM(5, 7, num_layers=2, bidirectional=True)
    run_both(lstm, (randn(6, 2, 5), (randn(4, 2, 7), randn(4, 2, 7))), [randn(6, 3, 5), randn(4, 3, 7),
                                                                          randn(4, 3, 7)],
             tmp_path / "lstm.onnx", nest=True)
    gru = GRU(5, 7, batch_first=True)
    proto = run_both(gru, (randn(2, 6, 5), randn(1, 2, 7)), [randn(3, 6, 5), randn(1, 3, 7)], tmp_path / "gru.onnx")
    h0 = proto.graph.input[1].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in h0] == [1, "batch", 7]  # the batch of h_0 is its axis 1


class Gate(nn.Module):
    """Two inputs, and an ONNX conversion of its own (the onnx_export protocol)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x, g):
        return self.proj(x) * td.sigmoid(g)

    def onnx_export(self, builder, inputs):
        x, g = inputs
        return builder.op("Mul", builder.module(self.proj, x), builder.op("Sigmoid", g))


def test_onnx_export_protocol_and_several_inputs(tmp_path):
    model = Gate()
    proto = run_both(model, (randn(2, 4), randn(2, 4)), [randn(3, 4), randn(3, 4)], tmp_path / "gate.onnx")
    assert [i.name for i in proto.graph.input] == ["input_0", "input_1"]
    assert {i.name for i in proto.graph.initializer} == {"proj.weight", "proj.bias"}


def test_shared_weights_are_stored_once_and_opset_18_works(tmp_path):
    td.manual_seed(4)
    lin = nn.Linear(6, 6)
    model = nn.Sequential(lin, nn.GroupNorm(3, 6), lin, nn.ReLU())  # GroupNorm uses ReduceMean (axes an input)
    proto = run_both(model, randn(2, 6), [randn(5, 6)], tmp_path / "shared.onnx", opset=18)
    assert [i.name for i in proto.graph.initializer].count("0.weight") == 1
    assert proto.opset_import[0].version == 18
    from tidu.nn.transformer import RMSNorm
    run_both(nn.Sequential(RMSNorm(6), nn.Linear(6, 2)), randn(2, 6), [randn(3, 6)], tmp_path / "rms.onnx", opset=18)


def test_fixed_batch_and_no_file(tmp_path):
    proto = export_onnx(nn.Linear(3, 2), td.zeros(4, 3), None, dynamic_batch=False)
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [4, 3]
    assert [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] == [4, 2]
    assert not list(tmp_path.iterdir())


class Custom(nn.Module):
    def forward(self, x):
        return x * 2


class MySequential(nn.Sequential):
    def forward(self, x):  # not Sequential's computation any more
        return super().forward(x) + 1


def test_unsupported_layers_are_named_with_their_path(tmp_path):
    path = tmp_path / "bad.onnx"
    model = nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.ReLU(), Custom()))
    with pytest.raises(OnnxExportError, match=r"cannot export layer '1\.1' \(Custom\): tidu has no ONNX conversion "
                                              r"for Custom.*onnx_export\(self, builder, inputs\).*Conv2d.*Linear"):
        export_onnx(model, td.zeros(2, 3), path)
    assert not path.exists()
    with pytest.raises(OnnxExportError, match=r"cannot export the model \(MySequential\)"):
        export_onnx(MySequential(nn.Linear(3, 3)), td.zeros(2, 3), path)
    with pytest.raises(OnnxExportError, match=r"cannot export the model \(Bilinear\)"):
        export_onnx(nn.Bilinear(2, 2, 1), (td.zeros(1, 2), td.zeros(1, 2)), path)


@pytest.mark.parametrize("layer,shape,message", [
    (lambda: nn.MaxPool2d(2, return_indices=True), (1, 2, 4, 4), "return_indices=True is not exported"),
    (lambda: nn.AvgPool2d(2, divisor_override=3), (1, 2, 4, 4), "divisor_override has no ONNX equivalent"),
    (lambda: nn.AdaptiveAvgPool2d(3), (1, 2, 4, 4), r"output_size \(3, 3\) from an input of spatial size \(4, 4\)"),
    (lambda: nn.BatchNorm1d(3, track_running_stats=False), (2, 3), "track_running_stats=False"),
    (lambda: nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular"), (1, 2, 4, 4), "padding_mode=.circular. needs opset 19"),
])
def test_unsupported_options_are_refused(layer, shape, message):
    with pytest.raises(OnnxExportError, match=r"cannot export layer '0' \(\w+\): " + message):
        export_onnx(nn.Sequential(layer()), td.zeros(*shape))


def test_circular_padding_with_opset_19(tmp_path):
    td.manual_seed(5)
    conv = nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular")
    run_both(conv, randn(1, 2, 5, 5), [randn(2, 2, 5, 5)], tmp_path / "circ.onnx", opset=19)


def test_bad_arguments():
    with pytest.raises(OnnxExportError, match="opset must be an integer from 17"):
        export_onnx(nn.Linear(2, 2), td.zeros(1, 2), opset=13)
    with pytest.raises(TypeError, match="export_onnx: expected a tidu.nn.Module"):
        export_onnx(lambda x: x, td.zeros(1, 2))
    with pytest.raises(OnnxExportError, match="does not run on a batch one larger"):
        export_onnx(nn.Sequential(nn.Flatten(0), nn.Linear(4, 1)), td.zeros(2, 2))


# --- tidu export ---

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    pytest.importorskip("sklearn")
    pytest.importorskip("pandas")
    from tidu.cli import main
    tmp = tmp_path_factory.mktemp("export")
    cfg = tmp / "wine.toml"
    cfg.write_text('seed = 0\n[data]\nsource = "wine"\n[model]\nhidden = [16, 8]\nbatch_norm = true\n'
                   'dropout = 0.1\nactivation = "gelu"\n[output]\nplots = false\n')
    assert main(["train", str(cfg), "--out", str(tmp / "run"), "--epochs", "1"]) == 0
    return tmp / "run"


def test_tidu_export_onnx(run_dir, tmp_path, capsys):
    from tidu.cli import main
    from tidu.cli.train import Run
    capsys.readouterr()
    assert main(["export", str(run_dir), "--onnx"]) == 0
    out = capsys.readouterr().out
    assert f"ONNX model written to {run_dir / 'model.onnx'}" in out and "(batch, 13)" in out
    assert "onnxruntime check: largest difference from tidu" in out
    model = Run(run_dir).model
    run_both(model, td.zeros(1, 13), [randn(7, 13)], run_dir / "model.onnx")  # the same model, exported again
    assert main(["export", str(run_dir), "--onnx", "--out", str(tmp_path / "m.onnx"), "--opset", "18"]) == 0
    assert onnx.load(str(tmp_path / "m.onnx")).opset_import[0].version == 18
    capsys.readouterr()
    assert main(["export", str(run_dir)]) == 1
    assert "choose the format: tidu export RUN_DIR --onnx" in capsys.readouterr().err

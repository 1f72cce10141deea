"""The time loop of recurrent layers (RNN, LSTM, GRU) as one fused op per sequence, with BPTT backward.

A recurrent layer splits into the input projections ``gi = x W_ihᵀ + b_ih`` of every time step — one
matmul (``linear``) outside the loop — and the recurrence, which is what ``rnn_sequence`` runs: per
step only ``h W_hhᵀ`` and the gate arithmetic, on preallocated arrays. The whole sequence is ONE graph
node (instead of a dozen recorded ops per step); its backward is backpropagation through time in one
loop that only carries ``dh`` (and ``dc``) back, while the weight gradients ``dW_hh = Σ_t dgatesᵀ h_{t-1}``
come after the loop from one matmul over all steps.

Gate layouts are PyTorch's: LSTM rows of ``w_hh`` are (i, f, g, o), GRU rows (r, z, n).

>>> import tidu as td
>>> gi = td.randn(5, 2, 4 * 3)                  # T=5 steps, batch 2, 4 gates × hidden 3
>>> out, (h_n, c_n) = td.rnn_sequence("LSTM", gi, td.zeros(2, 3), td.randn(12, 3), c0=td.zeros(2, 3))
>>> out.shape, h_n.shape, c_n.shape
((5, 2, 3), (2, 3), (2, 3))
"""
from ..backend import array_module
from ..tensor import _result
from .linalg import linear
from .shape import reshape, unsqueeze

__all__ = ["rnn_sequence", "rnn_tanh_cell", "rnn_relu_cell", "lstm_cell", "gru_cell"]

GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _sigmoid_(a, lib):
    """σ(a) in place, as (tanh(a/2) + 1) / 2: no overflow for large |a| (exp would warn)."""
    a *= 0.5
    lib.tanh(a, out=a)
    a *= 0.5
    a += 0.5


def _dsigmoid(s, out, lib):
    """σ' = σ (1 - σ), from σ, into ``out`` (no temporaries: big ones cost page faults)."""
    lib.subtract(1, s, out=out)
    out *= s
    return out


def _dtanh(t, out, lib):
    """tanh' = 1 - tanh², from tanh, into ``out``."""
    lib.multiply(t, t, out=out)
    lib.subtract(1, out, out=out)
    return out


def _check(mode, gi, h0, w_hh, b_hh, c0, w_hr):
    if mode not in GATES:
        raise ValueError(f"rnn_sequence: mode must be one of {sorted(GATES)}, got {mode!r}")
    if gi.ndim != 3:
        raise ValueError(f"rnn_sequence: gi (the input projections) must be (time, batch, gates × hidden), "
                         f"got shape {tuple(gi.shape)}")
    T, B, GH = gi.shape
    G = GATES[mode]
    if GH % G:
        raise ValueError(f"rnn_sequence: {mode} has {G} gates, but gi's last dimension {GH} is not a multiple of {G}")
    H = GH // G
    P = H if w_hr is None else w_hr.shape[0]
    expected = {"h0": (h0, (B, P)), "w_hh": (w_hh, (GH, P)), "b_hh": (b_hh, (GH,)), "c0": (c0, (B, H)),
                "w_hr": (w_hr, (P, H))}
    if (mode == "LSTM") != (c0 is not None):
        raise ValueError(f"rnn_sequence: c0 is {'required' if mode == 'LSTM' else 'only for LSTM'}")
    if w_hr is not None and mode != "LSTM":
        raise ValueError("rnn_sequence: w_hr (a projection) is only for LSTM")
    for name, (t, shape) in expected.items():
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"rnn_sequence: {name} has shape {tuple(t.shape)}, expected {shape} "
                             f"(gi is {tuple(gi.shape)}: {mode}, hidden size {H})")
        if t is not None and t.dtype != gi.dtype:
            raise TypeError(f"rnn_sequence: {name} is {t.dtype} but gi is {gi.dtype}; use one dtype")
    return T, B, H, P


def rnn_sequence(mode, gi, h0, w_hh, b_hh=None, c0=None, w_hr=None, reverse=False):
    """Run a recurrent layer's recurrence over all time steps of ``gi``, the input projections
    (time, batch, gates × hidden) that ``linear(x, w_ih, b_ih)`` gives; ``reverse=True`` walks the
    sequence backwards (the second direction of a bidirectional layer). ``mode`` is ``"RNN_TANH"``,
    ``"RNN_RELU"``, ``"GRU"`` or ``"LSTM"`` (which takes ``c0`` and optionally the projection ``w_hr``).

    Returns ``(output, h_n)`` — ``(output, (h_n, c_n))`` for LSTM — with output (time, batch, hidden) in
    the input's time order and h_n, c_n (batch, hidden) the states after the last step processed.
    """
    T, B, H, P = _check(mode, gi, h0, w_hh, b_hh, c0, w_hr)
    run = {"RNN_TANH": _rnn, "RNN_RELU": _rnn, "GRU": _gru, "LSTM": _lstm}[mode]
    x = gi.data[::-1] if reverse else gi.data  # the loop always runs forward over "processing order"
    lib = array_module(x)
    arrays = [t.data if t is not None else None for t in (h0, w_hh, b_hh, c0, w_hr)]
    hs, c_n, back = run(mode, lib, x, *arrays)
    hs = hs[1:]  # the outputs h_1 … h_T, in processing order
    parents = tuple(t for t in (gi, h0, w_hh, b_hh, c0, w_hr) if t is not None)
    needs = [t is not None and t.requires_grad for t in (gi, h0, w_hh, b_hh, c0, w_hr)]

    def backward(g):
        if mode == "LSTM":  # the packed array: T×B×P outputs, then c_n
            g_out, g_c = g[:T * B * P].reshape(T, B, P), g[T * B * P:].reshape(B, H)
        else:
            g_out, g_c = g, None
        grads = back(g_out[::-1] if reverse else g_out, g_c, needs)
        if reverse and grads[0] is not None:
            grads[0] = lib.ascontiguousarray(grads[0][::-1])
        return tuple(gr for gr, t in zip(grads, (gi, h0, w_hh, b_hh, c0, w_hr)) if t is not None)

    if mode != "LSTM":
        output = _result(lib.ascontiguousarray(hs[::-1]) if reverse else hs, parents, backward)
        return output, output[0 if reverse else T - 1]
    # One node with two outputs: pack them into one flat array and slice (the slices' gradients add up)
    packed = _result(lib.concatenate([(hs[::-1] if reverse else hs).reshape(-1), c_n.reshape(-1)]),
                     parents, backward)
    output = reshape(packed[:T * B * P], (T, B, P))
    return output, (output[0 if reverse else T - 1], reshape(packed[T * B * P:], (B, H)))


def _weight_grads(dgates, hs_prev, needs, w_hh_shape):
    """dW_hh = Σ_t dgates_tᵀ h_{t-1} and db_hh = Σ_t dgates_t, each in one call over all steps."""
    GH, P = w_hh_shape
    dw = dgates.reshape(-1, GH).T @ hs_prev.reshape(-1, P) if needs[2] else None
    db = dgates.sum(axis=(0, 1)) if needs[3] else None
    return dw, db


def _rnn(mode, lib, x, h0, w_hh, b_hh, c0, w_hr):
    # h_t = act(gi_t + h_{t-1} W_hhᵀ + b_hh)
    T, B, H = x.shape
    hs = lib.empty((T + 1, B, H), dtype=x.dtype)
    hs[0] = h0
    gi = x + b_hh if b_hh is not None else x
    w_t = lib.ascontiguousarray(w_hh.T)  # BLAS runs (B, H) @ (H, G·H) about 2× faster on a C-ordered copy
    relu = mode == "RNN_RELU"
    for t in range(T):
        h = hs[t + 1]
        lib.matmul(hs[t], w_t, out=h)
        h += gi[t]
        lib.maximum(h, 0, out=h) if relu else lib.tanh(h, out=h)

    def back(g_out, g_c, needs):
        act = hs[1:]
        dgates = lib.empty_like(act)
        deriv = lib.greater(act, 0, out=lib.empty_like(act)) if relu else _dtanh(act, lib.empty_like(act), lib)
        dh = lib.zeros((B, H), dtype=x.dtype)
        for t in range(T - 1, -1, -1):
            dh += g_out[t]
            lib.multiply(dh, deriv[t], out=dgates[t])
            lib.matmul(dgates[t], w_hh, out=dh)  # dh_{t-1} = dgates_t W_hh
        dw, db = _weight_grads(dgates, hs[:T], needs, w_hh.shape)
        return [dgates, dh, dw, db, None, None]
    return hs, None, back


def _lstm(mode, lib, x, h0, w_hh, b_hh, c0, w_hr):
    # gates = gi_t + h_{t-1} W_hhᵀ + b_hh; c_t = f c_{t-1} + i g; m_t = o tanh(c_t); h_t = m_t (W_hrᵀ)
    T, B, GH = x.shape
    H, P = GH // 4, h0.shape[1]
    # σ(a) = (tanh(a/2) + 1)/2: halving the i, f, o columns of gi and W_hh up front turns the four
    # activations of a step into one tanh over all gates plus one multiply-add.
    half = lib.full(GH, 0.5, dtype=x.dtype)
    half[2 * H:3 * H] = 1.0
    shift = half.copy()  # +0.5 after σ's tanh, 0 for g
    shift[2 * H:3 * H] = 0.0
    acts = x * half  # becomes the activations (i, f, g, o), in place
    if b_hh is not None:
        acts += b_hh * half
    w_t = lib.ascontiguousarray((w_hh * half[:, None]).T)  # C order: BLAS is ~2× faster on it than on .T
    w_hr_t = lib.ascontiguousarray(w_hr.T) if w_hr is not None else None
    hs = lib.empty((T + 1, B, P), dtype=x.dtype)
    cs = lib.empty((T + 1, B, H), dtype=x.dtype)
    tanh_c = lib.empty((T, B, H), dtype=x.dtype)
    ms = lib.empty((T, B, H), dtype=x.dtype) if w_hr is not None else None
    hs[0], cs[0] = h0, c0
    buf, ig = lib.empty((B, GH), dtype=x.dtype), lib.empty((B, H), dtype=x.dtype)
    for t in range(T):
        a = acts[t]
        lib.matmul(hs[t], w_t, out=buf)
        a += buf
        lib.tanh(a, out=a)
        a *= half
        a += shift
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        c = cs[t + 1]
        lib.multiply(f, cs[t], out=c)
        lib.multiply(i, g, out=ig)
        c += ig
        lib.tanh(c, out=tanh_c[t])
        if w_hr is None:
            lib.multiply(o, tanh_c[t], out=hs[t + 1])
        else:
            lib.multiply(o, tanh_c[t], out=ms[t])
            lib.matmul(ms[t], w_hr_t, out=hs[t + 1])

    def back(g_out, g_c, needs):
        # Everything that does not depend on the incoming gradient, for all steps at once, so that the
        # loop is 7 calls per step. d(pre-activation) = d(activation) × σ' (σ' = σ(1 - σ), tanh' = 1 - tanh²):
        i, f, g, o = (acts[:, :, k * H:(k + 1) * H] for k in range(4))
        k_o = _dsigmoid(o, lib.empty_like(tanh_c), lib)
        k_o *= tanh_c                                    # do_pre = dm tanh(c) σ'(o)     (h = o tanh(c))
        k_c = _dtanh(tanh_c, lib.empty_like(tanh_c), lib)
        k_c *= o                                         # dc += dm o tanh'(c)
        k_ifg = lib.empty((T, B, 3, H), dtype=x.dtype)
        _dsigmoid(i, k_ifg[:, :, 0], lib)[...] *= g      # di_pre = dc g σ'(i)           (c = f c_prev + i g)
        _dsigmoid(f, k_ifg[:, :, 1], lib)[...] *= cs[:T]  # df_pre = dc c_prev σ'(f)
        _dtanh(g, k_ifg[:, :, 2], lib)[...] *= i         # dg_pre = dc i tanh'(g)
        dgates = lib.empty_like(acts)
        d4 = dgates.reshape(T, B, 4, H)
        dms = lib.empty((T, B, P), dtype=x.dtype) if w_hr is not None else None
        dh = lib.zeros((B, P), dtype=x.dtype)
        dc = lib.zeros((B, H), dtype=x.dtype) if g_c is None else g_c.astype(x.dtype, copy=True)
        tmp = lib.empty((B, H), dtype=x.dtype)
        for t in range(T - 1, -1, -1):
            dh += g_out[t]
            if w_hr is None:
                dm = dh
            else:
                dms[t] = dh
                dm = dh @ w_hr                                       # dm = dh W_hr
            lib.multiply(dm, k_o[t], out=d4[t, :, 3])
            lib.multiply(dm, k_c[t], out=tmp)
            dc += tmp
            lib.multiply(dc[:, None, :], k_ifg[t], out=d4[t, :, :3])
            dc *= f[t]                                               # dc_{t-1} = dc f
            lib.matmul(dgates[t], w_hh, out=dh)                      # dh_{t-1} = dgates W_hh
        dw, db = _weight_grads(dgates, hs[:T], needs, w_hh.shape)
        dw_hr = dms.reshape(-1, P).T @ ms.reshape(-1, H) if w_hr is not None and needs[5] else None
        return [dgates, dh, dw, db, dc, dw_hr]
    return hs, cs[T], back


def _gru(mode, lib, x, h0, w_hh, b_hh, c0, w_hr):
    # r, z = σ(gi + h W_hhᵀ + b_hh) ; n = tanh(gi_n + r (h W_hnᵀ + b_hn)) ; h' = (1 - z) n + z h
    T, B, GH = x.shape
    H = GH // 3
    acts = x.copy()  # becomes the activations (r, z, n), in place
    hn = lib.empty((T, B, H), dtype=x.dtype)  # h W_hnᵀ + b_hn, kept for the backward
    hs = lib.empty((T + 1, B, H), dtype=x.dtype)
    hs[0] = h0
    gh, tmp = lib.empty((B, GH), dtype=x.dtype), lib.empty((B, H), dtype=x.dtype)
    w_t = lib.ascontiguousarray(w_hh.T)  # C order: BLAS is ~2× faster on it than on .T
    for t in range(T):
        a = acts[t]
        lib.matmul(hs[t], w_t, out=gh)
        if b_hh is not None:
            gh += b_hh
        rz = a[:, :2 * H]
        rz += gh[:, :2 * H]
        _sigmoid_(rz, lib)
        r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
        hn[t] = gh[:, 2 * H:]
        lib.multiply(r, hn[t], out=tmp)
        n += tmp
        lib.tanh(n, out=n)
        lib.subtract(hs[t], n, out=tmp)
        tmp *= z
        lib.add(n, tmp, out=hs[t + 1])  # h' = n + z (h - n)

    def back(g_out, g_c, needs):
        # What does not depend on the incoming gradient, for all steps at once (σ' = σ(1 - σ), tanh' = 1 - tanh²):
        r, z, n = (acts[:, :, k * H:(k + 1) * H] for k in range(3))
        scratch = lib.empty_like(hn)
        k_n = _dtanh(n, lib.empty_like(hn), lib)
        k_n *= lib.subtract(1, z, out=scratch)               # dn_pre = dh (1 - z) tanh'(n)   (h' = (1 - z) n + z h)
        k_r = _dsigmoid(r, lib.empty_like(hn), lib)
        k_r *= hn                                            # dr_pre = dn_pre hn σ'(r)       (n = tanh(gi_n + r hn))
        k_z = _dsigmoid(z, lib.empty_like(hn), lib)
        k_z *= lib.subtract(hs[:T], n, out=scratch)          # dz_pre = dh (h - n) σ'(z)
        dgi, dgh = lib.empty_like(acts), lib.empty_like(acts)  # d(input gates), d(hidden gates)
        dh, direct = lib.zeros((B, H), dtype=x.dtype), lib.empty((B, H), dtype=x.dtype)
        for t in range(T - 1, -1, -1):
            dh += g_out[t]
            di, dhh = dgi[t], dgh[t]
            lib.multiply(dh, k_n[t], out=di[:, 2 * H:])
            lib.multiply(di[:, 2 * H:], k_r[t], out=di[:, :H])
            lib.multiply(dh, k_z[t], out=di[:, H:2 * H])
            dhh[:, :2 * H] = di[:, :2 * H]
            lib.multiply(di[:, 2 * H:], r[t], out=dhh[:, 2 * H:])   # d(h W_hnᵀ + b_hn) = dn_pre r
            lib.multiply(dh, z[t], out=direct)
            lib.matmul(dhh, w_hh, out=dh)                           # dh_{t-1} = dgates_h W_hh + dh z
            dh += direct
        dw, db = _weight_grads(dgh, hs[:T], needs, w_hh.shape)
        return [dgi, dh, dw, db, None, None]
    return hs, None, back


# --- one step (PyTorch's torch.rnn_tanh_cell / lstm_cell / gru_cell): the same op with T = 1 ---

def _cell(mode, input, hx, w_ih, w_hh, b_ih, b_hh, c=None):
    gi = unsqueeze(linear(input, w_ih, b_ih), 0)
    return rnn_sequence(mode, gi, hx, w_hh, b_hh, c0=c)[1]


def rnn_tanh_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    """One step ``h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)`` on a batch: input (B, I), hx (B, H)."""
    return _cell("RNN_TANH", input, hx, w_ih, w_hh, b_ih, b_hh)


def rnn_relu_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    """One step ``h' = relu(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)`` on a batch: input (B, I), hx (B, H)."""
    return _cell("RNN_RELU", input, hx, w_ih, w_hh, b_ih, b_hh)


def lstm_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step on a batch: hx = (h, c), each (B, H); returns (h', c')."""
    h, c = hx
    return _cell("LSTM", input, h, w_ih, w_hh, b_ih, b_hh, c)


def gru_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    """One GRU step on a batch: input (B, I), hx (B, H); returns h'."""
    return _cell("GRU", input, hx, w_ih, w_hh, b_ih, b_hh)

"""Privacy accounting: how much ε a run of DP-SGD has spent, through Google's ``dp-accounting``.

One DP-SGD step is a Poisson-subsampled Gaussian mechanism: each example joins the batch with
probability ``q`` (the sample rate) and the summed, clipped gradient gets N(0, (σ·C)²) noise, where
σ is the noise multiplier. A run is that step composed ``steps`` times. ``dp-accounting`` turns the
composition into an (ε, δ) guarantee, by one of two methods:

- ``"rdp"``: Rényi DP over a fixed grid of orders (``DEFAULT_RDP_ORDERS``), the analysis of Abadi et
  al. (2016) and Mironov (2017). The RDP of one step is computed once per (σ, q); a run's RDP is that
  times the number of steps, so ε after any number of steps costs a fraction of a millisecond.
- ``"pld"``: privacy loss distributions (Koskela et al., 2020; Doroshenko et al., 2022): a tighter ε
  (often 10–20 % smaller) at a cost of 0.1–2 s per evaluation.

``dp-accounting`` is the ``privacy`` extra (``pip install 'tidu[privacy]'``); it is imported on first use.

>>> import tidu.privacy as tp
>>> round(tp.compute_epsilon(noise_multiplier=1.0, sample_rate=0.01, steps=1000, delta=1e-5), 3)
2.101
"""
import contextlib
import logging
import math
import numbers

__all__ = ["PrivacyAccountant", "compute_epsilon", "find_noise_multiplier", "PrivacyBudgetExceeded", "MECHANISMS"]

MECHANISMS = ("rdp", "pld")


class PrivacyBudgetExceeded(RuntimeError):
    """Raised instead of a step that would take the privacy spent past the target ε."""


def _dp_accounting():
    try:
        import dp_accounting
    except ImportError:
        raise ImportError("tidu.privacy: privacy accounting uses the dp-accounting package, which is not "
                          "installed: pip install 'tidu[privacy]' (or pip install dp-accounting)") from None
    return dp_accounting


def _check_mechanism(who, mechanism):
    if mechanism not in MECHANISMS:
        raise ValueError(f"{who}: accountant must be one of {MECHANISMS}, got {mechanism!r}")


def _check_number(who, name, v, lo=0.0, hi=math.inf, lo_open=False, hi_open=False):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or math.isnan(v):
        raise TypeError(f"{who}: {name} must be a real number, got {type(v).__name__} {v!r}")
    if (v < lo or (lo_open and v == lo)) or (v > hi or (hi_open and v == hi)):
        lb, hb = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ValueError(f"{who}: {name} must lie in {lb}{lo}, {hi}{hb}, got {v!r}")
    return float(v)


@contextlib.contextmanager
def _quiet():
    # dp-accounting logs (through absl) each small RDP order whose series does not converge and is left
    # out of the minimum over orders: expected for large q and small σ, and not the user's concern
    log = logging.getLogger("absl")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


_RDP_PER_STEP = {}  # (σ, q) -> RDP of one step at every order of the default grid


def _rdp_per_step(dpa, sigma, q):
    key = (sigma, q)
    if key not in _RDP_PER_STEP:
        acc = dpa.rdp.RdpAccountant()
        with _quiet():
            acc.compose(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), 1)
        _RDP_PER_STEP[key] = acc.rdp
        if len(_RDP_PER_STEP) > 256:  # a bisection visits many σ; keep the cache small
            _RDP_PER_STEP.pop(next(iter(_RDP_PER_STEP)))
    return _RDP_PER_STEP[key]


def _epsilon(history, delta, mechanism):
    """ε(δ) of a run given as [(noise_multiplier, sample_rate, steps), ...], composed in order."""
    history = [(s, q, t) for s, q, t in history if t > 0 and q > 0]
    if not history:
        return 0.0
    if any(s == 0 for s, _, _ in history):
        return math.inf  # a step without noise releases a gradient exactly
    dpa = _dp_accounting()
    if mechanism == "rdp":
        orders = dpa.rdp.RdpAccountant().orders
        rdp = sum(t * _rdp_per_step(dpa, s, q) for s, q, t in history)
        return float(dpa.rdp.rdp_privacy_accountant.compute_epsilon(orders, rdp, delta)[0])
    acc = dpa.pld.PLDAccountant()
    with _quiet():
        for s, q, t in history:
            acc.compose(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(s)), int(t))
        return float(acc.get_epsilon(delta))


def compute_epsilon(noise_multiplier, sample_rate, steps, delta, accountant="rdp"):
    """ε(δ) after ``steps`` DP-SGD steps with this noise multiplier and Poisson sample rate.

    >>> round(compute_epsilon(1.1, 256 / 60000, 60000 // 256 * 60, 1e-5), 2)   # MNIST, 60 epochs
    2.59
    """
    who = "compute_epsilon"
    _check_mechanism(who, accountant)
    sigma = _check_number(who, "noise_multiplier", noise_multiplier)
    q = _check_number(who, "sample_rate", sample_rate, 0.0, 1.0)
    delta = _check_number(who, "delta", delta, 0.0, 1.0, lo_open=True, hi_open=True)
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"{who}: steps must be a non-negative integer, got {steps!r}")
    return _epsilon([(sigma, q, int(steps))], delta, accountant)


def find_noise_multiplier(target_epsilon, target_delta, sample_rate, steps=None, epochs=None, accountant="rdp",
                          epsilon_tolerance=0.01):
    """The smallest noise multiplier (within ``epsilon_tolerance`` of ε) whose run spends at most
    ``target_epsilon``: doubling, then bisection, as Opacus's ``get_noise_multiplier`` does.

    Give ``steps``, or ``epochs`` (then steps = round(epochs / sample_rate)).

    >>> sigma = find_noise_multiplier(2.0, 1e-5, sample_rate=0.01, epochs=10)
    >>> 1.0 < sigma < 1.1 and compute_epsilon(sigma, 0.01, 1000, 1e-5) <= 2.0
    True
    """
    who = "find_noise_multiplier"
    _check_mechanism(who, accountant)
    target = _check_number(who, "target_epsilon", target_epsilon, 0.0, lo_open=True)
    delta = _check_number(who, "target_delta", target_delta, 0.0, 1.0, lo_open=True, hi_open=True)
    q = _check_number(who, "sample_rate", sample_rate, 0.0, 1.0, lo_open=True)
    if (steps is None) == (epochs is None):
        raise ValueError(f"{who}: give exactly one of steps= and epochs= (got steps={steps!r}, epochs={epochs!r})")
    if steps is None:
        _check_number(who, "epochs", epochs, 0.0, lo_open=True)
        steps = max(1, int(round(epochs / q)))
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"{who}: steps must be a positive integer, got {steps!r}")

    def eps(sigma):
        return _epsilon([(sigma, q, int(steps))], delta, accountant)

    low, high = 0.0, 10.0
    eps_high = eps(high)
    while eps_high > target:
        low, high = high, 2 * high
        if high > 1e6:
            raise ValueError(f"{who}: no noise multiplier up to 1e6 reaches ε = {target} with δ = {delta} "
                             f"over {steps} steps at sample rate {q}; allow a larger ε or fewer steps")
        eps_high = eps(high)
    while target - eps_high > epsilon_tolerance and high - low > 1e-9:
        mid = (low + high) / 2
        e = eps(mid)
        if e <= target:
            high, eps_high = mid, e
        else:
            low = mid
    return high


class PrivacyAccountant:
    """Keeps the history of DP-SGD steps and answers ``epsilon(delta)``.

    The history is a list of ``[noise_multiplier, sample_rate, steps]`` runs (consecutive steps with the
    same σ and q are merged), so a state dict is tiny and JSON-able.

    >>> acc = PrivacyAccountant("rdp")
    >>> for _ in range(1000):
    ...     acc.step(noise_multiplier=1.0, sample_rate=0.01)
    >>> acc.history, round(acc.epsilon(1e-5), 3)
    ([[1.0, 0.01, 1000]], 2.101)
    """

    def __init__(self, mechanism="rdp"):
        _check_mechanism("PrivacyAccountant", mechanism)
        self.mechanism = mechanism
        self.history = []
        self._cache = {}

    @property
    def steps(self):
        """Steps taken so far."""
        return sum(t for _, _, t in self.history)

    def step(self, noise_multiplier, sample_rate, steps=1):
        """Record ``steps`` more steps at this noise multiplier and sample rate."""
        if self.history and self.history[-1][:2] == [noise_multiplier, sample_rate]:
            self.history[-1][2] += steps
        else:
            self.history.append([float(noise_multiplier), float(sample_rate), int(steps)])

    def epsilon(self, delta):
        """ε spent so far, for this δ."""
        delta = _check_number("PrivacyAccountant.epsilon", "delta", delta, 0.0, 1.0, lo_open=True, hi_open=True)
        return self.epsilon_after(0, 0.0, 0.0, delta)

    def epsilon_after(self, steps, noise_multiplier, sample_rate, delta):
        """ε that the history plus ``steps`` more steps at (σ, q) would spend (results are cached)."""
        history = [tuple(h) for h in self.history]
        if steps:
            history.append((float(noise_multiplier), float(sample_rate), int(steps)))
        key = (tuple(history), delta)
        if key not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = _epsilon(history, delta, self.mechanism)
        return self._cache[key]

    def state_dict(self):
        return {"mechanism": self.mechanism, "history": [list(h) for h in self.history]}

    def load_state_dict(self, state):
        if not isinstance(state, dict) or "history" not in state:
            raise ValueError("PrivacyAccountant.load_state_dict: expected a dict with 'history' (from state_dict()), "
                             f"got {type(state).__name__}")
        mechanism = state.get("mechanism", self.mechanism)
        _check_mechanism("PrivacyAccountant.load_state_dict", mechanism)
        self.mechanism = mechanism
        self.history = [[float(s), float(q), int(t)] for s, q, t in state["history"]]
        self._cache.clear()

    def __repr__(self):
        return f"PrivacyAccountant({self.mechanism!r}, steps={self.steps})"

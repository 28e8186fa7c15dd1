"""Ridge regression with per-target alpha chosen by exact leave-one-out (docs/method.md §3).

Public entry point: :func:`ridge_cv`. The split machinery (:func:`split_factors`,
:func:`alpha_groups`, :func:`run_loo_ridge`) is shared with :func:`fastenc.score_layer`,
which derives every split of a layer from one Gram matrix of all stimuli.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ._core.ridge import loo_ridge_block_range
from ._threads import thread_limits  # noqa: F401  (re-exported: fastenc.ridge.thread_limits callers)
from ._validation import as_numeric_2d, check_finite
from .constants import STUDY_ALPHAS

__all__ = ["STUDY_ALPHAS", "ridge_cv", "RidgeCVResult", "study_alphas"]

# Default targets per kernel block: small enough that a block's scratch (about five
# block x 83 float64 matrices) stays in a 1 MiB L2 cache.
DEFAULT_BLOCK = 128


def study_alphas() -> np.ndarray:
    """The study's alpha grid, ``10**49 ... 10**-50`` (a fresh copy)."""
    return STUDY_ALPHAS.copy()


def check_alphas(alphas) -> np.ndarray:
    """Validate an alpha grid: 1-D, non-empty, finite and strictly positive."""
    if alphas is None:
        return STUDY_ALPHAS
    a = np.asarray(alphas, dtype=np.float64)
    if a.ndim == 0:
        a = a.reshape(1)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"alphas must be a non-empty 1-D sequence, got shape {np.shape(alphas)}")
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        bad = a[~(np.isfinite(a) & (a > 0))]
        raise ValueError(f"alphas must be finite and > 0; got {bad[:5].tolist()}")
    return a


@functools.lru_cache(maxsize=8)
def _complement_basis(n: int) -> np.ndarray:
    """Orthonormal basis (n, n-1) of the complement of the constant vector.

    Columns 1.. of the Householder reflection that maps ``1/sqrt(n)`` onto ``e_1``.
    """
    u = np.full(n, 1.0 / np.sqrt(n))
    u[0] -= 1.0
    H = np.eye(n) - (2.0 / (u @ u)) * np.outer(u, u)
    B = np.ascontiguousarray(H[:, 1:])
    B.setflags(write=False)
    return B


@dataclass
class SplitFactors:
    """Eigen-factors of one split's centred train Gram (see ``fastenc._core.ridge``)."""

    Q: np.ndarray      # (n, m) eigenvectors, orthogonal to the constant vector
    lam: np.ndarray    # (m,) eigenvalues, 0 on the numerical null space
    Pt: np.ndarray | None  # (m, n_test): (X_test_c Xc^T Q)^T


def split_factors(G_train: np.ndarray, G_test_train: np.ndarray | None = None) -> SplitFactors:
    """Eigendecompose the centred train Gram of one split.

    Parameters
    ----------
    G_train : (n, n) float64
        ``X_train @ X_train.T`` for any fixed column offset of X (centring is done here).
    G_test_train : (n_test, n) float64, optional
        ``X_test @ X_train.T`` with the same column offset.

    Notes
    -----
    The centred Gram ``C G C`` (``C = I - 11^T/n``) is restricted to the complement of the
    constant vector, which belongs to the unpenalised intercept: left in, its eigenvalue
    (0 up to rounding) would get ridge weight and the LOO criterion would favour the
    smallest alpha everywhere. Eigenvalues below ``n * eps * lam_max`` are set to exactly 0
    (numerical null space of the centred features).
    """
    n = G_train.shape[0]
    V = _complement_basis(n)
    M = V.T @ G_train @ V
    M = 0.5 * (M + M.T)
    lam, U = np.linalg.eigh(M)
    lam_max = max(float(lam[-1]), 0.0)
    lam = np.where(lam > n * np.finfo(np.float64).eps * lam_max, lam, 0.0)
    Q = np.ascontiguousarray(V @ U)
    Pt = None
    if G_test_train is not None:
        A = G_test_train - G_train.mean(axis=0)[None, :]
        Pt = np.ascontiguousarray((A @ Q).T)
    return SplitFactors(Q=Q, lam=lam, Pt=Pt)


# Above 2**30 * lam_max the excess LOO error is c/alpha * (1 + O(lam_max/alpha)): monotone
# in alpha, so a descending run there can only be won at its first or last alpha.
_HIGH_RUN = 2.0 ** 30
# Below lam_min * 2**-34 every eigen-component of the fit (LOO residuals and predictions)
# is within a factor 1 +- 2**-34 (6e-11) of its alpha -> 0 limit: the flat bottom of the
# LOO curve, where which alpha "wins" is rounding noise (docs/method.md §3). Scored once.
_LOW_RUN = 2.0 ** -34


@dataclass
class AlphaGroups:
    """Alphas of a grid grouped by identical LOO factors (see :func:`alpha_groups`)."""

    F: np.ndarray          # (g, m) d = alpha/(lam+alpha), or delta = lam/(lam+alpha)
    use_delta: np.ndarray  # (g,) bool: F holds delta (alpha above the spectrum)
    alpha: np.ndarray      # (g,) representative alpha (first of the group in grid order)
    index: np.ndarray      # (g,) its index in the grid


def alpha_groups(lam: np.ndarray, alphas: np.ndarray) -> AlphaGroups:
    """Per-alpha LOO factors, with alphas that cannot change the choice merged or skipped.

    * ``alpha < lam_min * 2**-34`` (``lam_min`` the smallest nonzero eigenvalue): every
      eigen-component of the fit is within ``1 +- 2**-34`` of its ``alpha -> 0`` limit, so
      these alphas give the same LOO errors and predictions to ~6e-11 (the flat bottom of
      docs/method.md §3/§8); they are scored once, with the factors of the first of them in grid
      order, which stands for all of them.
    * ``alpha > lam_max``: factors ``delta = lam / (lam + alpha)``, scored in the exact
      excess form of ``fastenc._core.ridge._select_alpha_block``.
    * For a strictly descending grid, the run ``alpha > 2**30 * lam_max`` is monotone in
      alpha, so only its first and last alphas are scored.
    * Consecutive alphas with bitwise-identical factors are merged (identical errors; the
      first in grid order wins).
    """
    lam = np.asarray(lam, dtype=np.float64)
    alphas = np.asarray(alphas, dtype=np.float64)
    nonzero = lam[lam > 0]
    lam_min = float(nonzero.min()) if nonzero.size else np.inf
    lam_max = float(lam.max()) if lam.size else 0.0
    evaluate = np.ones(alphas.size, dtype=bool)
    if alphas.size > 2 and np.all(np.diff(alphas) < 0):
        high = np.flatnonzero(alphas > _HIGH_RUN * lam_max)
        if high.size > 2:
            evaluate[high[1:-1]] = False
    low_ref = None
    rows, flags, gal, gidx = [], [], [], []
    for a_i, a in enumerate(alphas):
        if not evaluate[a_i]:
            continue
        if a < _LOW_RUN * lam_min:
            if low_ref is None:
                low_ref = a
            f, delta = low_ref / (lam + low_ref), False
        elif a > lam_max:
            f, delta = lam / (lam + a), True
        else:
            f, delta = a / (lam + a), False
        if rows and flags[-1] == delta and np.array_equal(f, rows[-1]):
            continue
        rows.append(f)
        flags.append(delta)
        gal.append(a)
        gidx.append(a_i)
    return AlphaGroups(F=np.ascontiguousarray(np.array(rows)), use_delta=np.array(flags, dtype=np.bool_),
                       alpha=np.array(gal, dtype=np.float64), index=np.array(gidx, dtype=np.int64))


@dataclass
class LooFactors:
    """Triangular factors of the LOO criterion of each alpha group (see ``_select_alpha_block``)."""

    q: np.ndarray     # (n,) row sums of Q**2 (1 - 1/n up to rounding)
    Tri: np.ndarray   # (g, m, m) upper triangular
    Perm: np.ndarray  # (g, m) int64
    Dd: np.ndarray    # (g, m) diagonal of D (ones below the spectrum)
    Do: np.ndarray    # (g, m) superdiagonal of D (zeros below the spectrum)


def loo_factors(Q: np.ndarray, grp: AlphaGroups) -> LooFactors:
    """Factor, per alpha group, the LOO sum of squared errors as a quadratic form in ``z``.

    With ``z = Q^T y``, ``q_i = sum_k Q_ik^2`` and ``e_inf = Q z / q`` (the alpha -> infinity
    residuals), the LOO residuals are ``e = diag(1/h) Q diag(d) z`` with
    ``h_i = sum_k Q_ik^2 d_k``.

    * Below the spectrum (factors ``d``): ``||e||^2 = ||Tri z||^2`` with ``Tri`` the R factor
      of the QR decomposition of ``diag(1/h) Q diag(d)`` (backward stable column by column,
      so each residual keeps its own relative accuracy).
    * Above it (factors ``delta = 1 - d``): ``e - e_inf = B z`` with
      ``B_ik = Q_ik (v_i - q_i delta_k) / (q_i (q_i - v_i))``, ``v = Q**2 delta``, so the
      excess ``||e||^2 - ||e_inf||^2 = z^T S z`` with ``S = B^T B + B^T C + C^T B``,
      ``C = diag(1/q) Q``. ``S`` is O(delta): factored by Bunch–Kaufman
      (``scipy.linalg.ldl``: ``S = (P L) D (P L)^T``), the excess keeps its accuracy however
      small it is.
    """
    from scipy.linalg import ldl

    n, m = Q.shape
    g = grp.F.shape[0]
    Q2 = Q ** 2
    q = Q2.sum(axis=1)
    Tri = np.zeros((g, m, m))
    Perm = np.tile(np.arange(m, dtype=np.int64), (g, 1))
    Dd = np.ones((g, m))
    Do = np.zeros((g, m))
    C = Q / q[:, None]
    for k in range(g):
        f = grp.F[k]
        if grp.use_delta[k]:
            v = Q2 @ f
            B = Q * (v[:, None] - q[:, None] * f[None, :]) / (q * (q - v))[:, None]
            BtC = B.T @ C
            S = B.T @ B + BtC + BtC.T
            lu, D, perm = ldl(0.5 * (S + S.T), lower=True)
            Tri[k] = lu[perm].T
            Perm[k] = perm
            Dd[k] = np.diag(D)
            Do[k, :-1] = np.diag(D, 1)
        else:
            with np.errstate(divide="ignore"):
                invh = 1.0 / (Q2 @ f)
            Tri[k] = np.linalg.qr((Q * invh[:, None]) * f[None, :], mode="r")
    return LooFactors(q=q, Tri=Tri, Perm=Perm, Dd=Dd, Do=Do)


def run_loo_ridge(Yt, train_idx, factors: SplitFactors, alphas, Pt=None, add_intercept=True,
                  block=DEFAULT_BLOCK, chunk=None, start=0, stop=None, per=1):
    """Exact-LOO alpha selection and prediction for targets ``Yt[start:stop]``, one split.

    Parameters
    ----------
    Yt : (T, N) float64, C order
        Targets, one per row, over all N stimuli.
    train_idx : (n,) int64
        Train stimuli of the split.
    factors : SplitFactors
        From :func:`split_factors` on the same train rows.
    alphas : (n_alphas,) float64
    Pt : (m, n_out), optional
        Output projection; defaults to ``factors.Pt`` (test predictions).
    add_intercept : bool
        Add each target's train mean to the outputs.
    block : int
        Targets per kernel block (fixed: results do not depend on thread count).
    chunk : int, optional
        Targets per kernel call (a multiple of ``block``); results do not change.
    per : int
        1, or the size of row groups ``[mean, rep_1, ...]`` whose first row is the mean of
        the others (their LOO residuals are then derived, not recomputed).

    Returns
    -------
    alpha_index : (T,) int64, loo_sse : (T,) float64, out : (T, n_out) float64, ybar : (T,)
    """
    T = Yt.shape[0]
    stop = T if stop is None else stop
    Pt = factors.Pt if Pt is None else Pt
    grp = alpha_groups(factors.lam, alphas)
    lf = loo_factors(factors.Q, grp)
    group = np.zeros(T, dtype=np.int64)
    sse = np.zeros(T)
    out = np.zeros((T, Pt.shape[1]))
    ybar = np.zeros(T)
    if chunk is None:
        chunk = stop - start
    if per > 1:
        block = max(per, (block // per) * per)
        if (stop - start) % per or start % per:
            raise ValueError(f"targets {start}:{stop} are not whole groups of {per}")
    chunk = max(block, (chunk // block) * block)
    for c0 in range(start, stop, chunk):
        c1 = min(c0 + chunk, stop)
        loo_ridge_block_range(Yt, train_idx, factors.Q, lf.q, factors.lam, lf.Tri, lf.Perm, lf.Dd, lf.Do,
                              grp.use_delta, grp.F.shape[0], grp.alpha, Pt, add_intercept,
                              per, block, c0, c1, group, sse, out, ybar)
    return grp.index[group], sse, out, ybar


def as_2d_float(name, A, allow_1d=True):
    """Deprecated spelling of :func:`fastenc._validation.as_numeric_2d` (argument order kept)."""
    return as_numeric_2d(A, name, allow_1d)


@dataclass
class RidgeCVResult:
    """Result of :func:`ridge_cv`.

    Attributes
    ----------
    alpha_ : (targets,) best alpha per target.
    alpha_index_ : (targets,) index of ``alpha_`` in ``alphas``.
    loo_mse_ : (targets,) mean squared LOO error at the best alpha.
    dual_coef_ : (n_samples, targets) dual coefficients ``c`` with ``coef_ = Xc^T c``.
    intercept_ : (targets,) the train mean of each target.
    alphas : the grid searched.
    """

    alpha_: np.ndarray
    alpha_index_: np.ndarray
    loo_mse_: np.ndarray
    dual_coef_: np.ndarray
    intercept_: np.ndarray
    alphas: np.ndarray
    X_mean_: np.ndarray
    X_centered_: np.ndarray
    squeeze_: bool = False

    def _out(self, A):
        return A[..., 0] if self.squeeze_ else A

    def predict(self, X_new):
        """Predictions ``(X_new - x_mean) @ coef_ + intercept_`` without forming ``coef_``."""
        Xn = as_numeric_2d(X_new, "X_new", allow_1d=False)
        if Xn.shape[1] != self.X_centered_.shape[1]:
            raise ValueError(f"X_new has {Xn.shape[1]} features, the fit had {self.X_centered_.shape[1]}")
        K = (Xn.astype(np.float64) - self.X_mean_) @ self.X_centered_.T
        return self._out(K @ self.dual_coef_ + self.intercept_[None, :])

    def coef(self, block=4096):
        """Primal weights ``coef_`` (features x targets), computed in target blocks."""
        T = self.dual_coef_.shape[1]
        W = np.empty((self.X_centered_.shape[1], T))
        for t0 in range(0, T, block):
            W[:, t0:t0 + block] = self.X_centered_.T @ self.dual_coef_[:, t0:t0 + block]
        return self._out(W)

    @property
    def coef_(self):
        return self.coef()


def ridge_cv(X, Y, alphas=None, n_threads=None, block=DEFAULT_BLOCK, max_memory_mb=None):
    """Ridge regression with per-target alpha chosen by exact leave-one-out.

    Intercept unpenalised (X and Y centred with their means), no feature scaling, squared
    LOO error computed in closed form in the sample space; among exactly equal LOO errors
    the first alpha in grid order wins. Memory never grows with features x targets.

    Parameters
    ----------
    X : (n, p) array, float32 or float64
        Features (p may be larger or smaller than n). Must be finite.
    Y : (n,) or (n, targets) array
        Targets. Must be finite.
    alphas : 1-D array, optional
        Grid, in priority order for ties. Default: the study's ``10**49 ... 10**-50``.
    n_threads : int, optional
        Numba threads (default: all). Results do not depend on it.
    block : int
        Targets per kernel block.
    max_memory_mb : float, optional
        Targets handled per kernel call, expressed as a memory budget for their rows of
        ``Y`` and the outputs (a convenience for very many targets; results do not change).
        Memory is O(samples x targets) for the inputs and outputs whatever this is; the
        working memory of the kernel is one ``block`` of targets per thread.

    Returns
    -------
    RidgeCVResult

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((83, 500)); Y = X[:, :3] + rng.standard_normal((83, 3))
    >>> fit = ridge_cv(X, Y)
    >>> fit.alpha_.shape, fit.predict(X[:5]).shape
    ((3,), (5, 3))
    """
    X = as_numeric_2d(X, "X", allow_1d=False)
    squeeze = np.ndim(Y) == 1
    Y = as_numeric_2d(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}: rows must be the same samples")
    if X.shape[0] < 3:
        raise ValueError(f"need at least 3 samples for leave-one-out, got {X.shape[0]}")
    check_finite(X, "X")
    check_finite(Y, "Y", col="target")
    alphas = check_alphas(alphas)
    n = X.shape[0]
    x_mean = X.mean(axis=0, dtype=np.float64)
    Xc = X.astype(np.float64) - x_mean
    f = split_factors(Xc @ Xc.T)
    Yt = np.ascontiguousarray(Y.T, dtype=np.float64)
    chunk = None
    if max_memory_mb is not None:
        chunk = int(max_memory_mb * 2**20 / (8 * (2 * n + 8)))
    with thread_limits(n_threads):
        idx, sse, dual_t, ybar = run_loo_ridge(Yt, np.arange(n, dtype=np.int64), f, alphas,
                                               Pt=np.ascontiguousarray(f.Q.T), add_intercept=False, block=block, chunk=chunk)
    return RidgeCVResult(alpha_=alphas[idx] if not squeeze else alphas[idx][0],
                         alpha_index_=idx if not squeeze else idx[0],
                         loo_mse_=sse / n if not squeeze else sse[0] / n,
                         dual_coef_=np.ascontiguousarray(dual_t.T), intercept_=ybar,
                         alphas=alphas, X_mean_=x_mean, X_centered_=Xc, squeeze_=squeeze)

"""scikit-learn estimator over :func:`fastenc.ridge_cv`: :class:`RidgeLOOCV`.

This module imports scikit-learn, an optional dependency of fastenc; ``import fastenc``
does not load it (``fastenc.RidgeLOOCV`` is resolved lazily on first access).
"""
from __future__ import annotations

import functools

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .ridge import ridge_cv

__all__ = ["RidgeLOOCV"]


class RidgeLOOCV(RegressorMixin, BaseEstimator):
    """Ridge regression with an unpenalised intercept and alpha chosen per target by exact LOO.

    A scikit-learn estimator over the same solver as :func:`fastenc.ridge_cv`: features and
    targets are centred with their training means (no scaling), and for every target
    separately the alpha of the grid with the smallest exact leave-one-out squared error
    is kept (closed form, no refits; among exactly equal errors the first alpha in grid
    order wins). Alpha is always chosen per target: there is no shared-alpha mode.

    Parameters
    ----------
    alphas : array-like of shape (n_alphas,), default=None
        Grid of strictly positive, finite alphas, in priority order for exact ties.
        ``None`` means the study's grid ``10**49, 10**48, ..., 10**-50``
        (:func:`fastenc.study_alphas`).
    n_threads : int, default=None
        Numba threads for the alpha search (``None``: all). Results do not depend on it.

    Attributes
    ----------
    alpha_ : float or ndarray of shape (n_targets,)
        Chosen alpha (a float when ``y`` was 1-D).
    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)
        Weights, scikit-learn's layout (the transpose of ``ridge_cv(...).coef_``).
        Computed from ``dual_coef_`` on first access and then kept, so that fitting and
        predicting never allocate features x targets.
    intercept_ : float or ndarray of shape (n_targets,)
        Intercept such that ``predict(X) == X @ coef_.T + intercept_`` (up to rounding),
        i.e. ``y_mean - X_mean @ coef_.T``; not the target mean that
        ``ridge_cv(...).intercept_`` holds.
    dual_coef_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Dual coefficients ``c`` with ``coef_.T == (X - X_mean).T @ c``.
    loo_mse_ : float or ndarray of shape (n_targets,)
        Mean squared leave-one-out error at ``alpha_``.
    best_score_ : float or ndarray of shape (n_targets,)
        ``-loo_mse_`` (as :class:`sklearn.linear_model.RidgeCV` with the default scoring).
    n_features_in_ : int
        Number of features seen during :meth:`fit`.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names seen during :meth:`fit`; only when ``X`` had string column names.

    See Also
    --------
    fastenc.ridge_cv : the functional form, for many targets at once.
    sklearn.linear_model.RidgeCV : scikit-learn's efficient LOO ridge.

    Notes
    -----
    Fitting needs at least 3 samples. The fitted estimator keeps a centred copy of the
    training ``X`` (n_samples x n_features) to predict in the dual form, as
    :func:`fastenc.ridge_cv` does: its predictions are bitwise those of
    ``ridge_cv(X, y, alphas).predict``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastenc import RidgeLOOCV
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((60, 5))
    >>> Y = np.column_stack([X @ [1.0, 2, 0, 0, -1], rng.standard_normal(60)])
    >>> Y[:, 0] += 0.1 * rng.standard_normal(60)
    >>> est = RidgeLOOCV(alphas=[1e3, 10, 0.1]).fit(X, Y)
    >>> est.alpha_.tolist()  # per target: a clean signal, then pure noise
    [0.1, 1000.0]
    >>> est.coef_.shape, est.predict(X[:3]).shape
    ((2, 5), (3, 2))
    """

    def __init__(self, alphas=None, n_threads=None):
        self.alphas = alphas
        self.n_threads = n_threads

    def fit(self, X, y):
        """Choose alpha per target by exact leave-one-out and fit the ridge weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training features (at least 3 samples).
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Targets.

        Returns
        -------
        self : RidgeLOOCV
            The fitted estimator.
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=True,
                             multi_output=True, ensure_min_samples=3)
        self.__dict__.pop("coef_", None)  # drop the previous fit's lazily computed weights
        res = ridge_cv(X, y, alphas=self.alphas, n_threads=self.n_threads)
        squeeze = y.ndim == 1
        # Intercept of the uncentred model: y_mean - X_mean @ coef, with X_mean @ coef
        # = (Xc @ X_mean) @ dual (no features x targets product).
        offset = (res.X_centered_ @ res.X_mean_) @ res.dual_coef_
        intercept = res.intercept_ - offset
        self._ridge = res
        self.alpha_ = res.alpha_
        self.loo_mse_ = res.loo_mse_
        self.best_score_ = -res.loo_mse_
        self.dual_coef_ = res.dual_coef_[:, 0] if squeeze else res.dual_coef_
        self.intercept_ = float(intercept[0]) if squeeze else intercept
        if squeeze:
            self.alpha_ = float(self.alpha_)
            self.loo_mse_ = float(self.loo_mse_)
            self.best_score_ = float(self.best_score_)
        return self

    @functools.cached_property
    def coef_(self):
        """Weights, (n_features,) or (n_targets, n_features); computed once per fit."""
        check_is_fitted(self, "dual_coef_")
        W = self._ridge.coef()
        return W if W.ndim == 1 else np.ascontiguousarray(W.T)

    def predict(self, X):
        """Predict with the fitted ridge (dual form, as ``ridge_cv(...).predict``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Predictions, 1-D when ``y`` was 1-D at fit.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self._ridge.predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = True
        return tags

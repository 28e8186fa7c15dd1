"""Synthetic, study-shaped data for the benchmarks (deterministic, no files needed).

``make_layer`` returns one layer's activations ``X`` (165 sounds x units) and voxel
responses ``Y`` (165 sounds x voxels x 3 repetitions), built to look like the real thing
where it matters for the cost and the numerics of exact-LOO ridge:

Activations (``X``, float32 as stored in the study's h5 files)
    ReLU of random projections of a latent stimulus code whose singular values decay as a
    power law (``s_k ~ k**-spectrum_decay``, exponent 1 by default, close to what is seen in
    DNN layers), plus a per-unit gain (log-normal) and bias (about 40 % of units silent on
    a given sound). So the features are non-negative and sparse, have a large common mean
    (removed by centring) and a decaying, full-rank (82 after centring) eigen-spectrum of
    the 83 x 83 train Gram: the eigenvalues span several orders of magnitude, so the LOO
    curve has an interior minimum whose position depends on the voxel's SNR and alphas
    are chosen all over the spectrum (not all at one end of the grid).

Responses (``Y``, float64)
    Per voxel: baseline (about 1, as in percent-signal-change data) + signal + noise. The
    signal mixes a part predictable from the layer (a random combination of the leading
    principal components of the centred activations, with decaying weights) and a part
    that is shared across repetitions but not in the layer (a random latent drive). The
    noise is independent per repetition. Signal-to-noise ratios are log-normal across
    voxels, and a fraction of voxels (``null_fraction``, 20 %) carry no signal at all
    (they exercise the flat top of the LOO curve, where the intercept-only prediction
    wins). The split reliability and hence the noise-correction floors are exercised too.

Nothing is cached; the NH2015 shape takes well under a second to build, B2021 about 2 s.
"""
from __future__ import annotations

import numpy as np

__all__ = ["NH2015", "B2021", "make_layer", "describe"]

#: (units, voxels) of the two study-shaped layers benchmarked.
NH2015 = dict(n_units=4096, n_voxels=7694)
B2021 = dict(n_units=4096, n_voxels=26792)


def make_activations(rng, n_stimuli=165, n_units=4096, spectrum_decay=1.0, active_fraction=0.6):
    """ReLU-like non-negative activations with a power-law latent spectrum (float32)."""
    r = n_stimuli
    latent = rng.standard_normal((n_stimuli, r)) * (np.arange(1, r + 1) ** -spectrum_decay)[None, :]
    latent *= np.sqrt(r) / np.linalg.norm(latent, axis=0).mean()
    proj = rng.standard_normal((r, n_units)) / np.sqrt(r)
    pre = latent @ proj  # (stimuli, units)
    sd = pre.std(axis=0)
    # bias so that about `active_fraction` of the sounds drive each unit
    from scipy.stats import norm

    bias = norm.ppf(1.0 - active_fraction) * sd
    gain = rng.lognormal(mean=0.0, sigma=0.75, size=n_units)
    X = np.maximum(pre - bias[None, :], 0.0) * gain[None, :]
    return X.astype(np.float32)


def make_responses(rng, X, n_voxels, n_reps=3, n_pcs=30, null_fraction=0.2,
                   layer_share=0.7, snr_log_mean=-0.3, snr_log_sd=0.8, chunk=4096):
    """Voxel responses (stimuli, voxels, reps): baseline + signal + independent noise."""
    n = X.shape[0]
    Xc = X.astype(np.float64) - X.astype(np.float64).mean(axis=0)
    U, s, _ = np.linalg.svd(Xc, full_matrices=False)
    k = min(n_pcs, U.shape[1])
    pcs = U[:, :k] * (np.arange(1, k + 1) ** -0.5)[None, :]  # decaying weight on later PCs
    shared = rng.standard_normal((n, 10))
    snr = rng.lognormal(snr_log_mean, snr_log_sd, size=n_voxels)
    snr[rng.random(n_voxels) < null_fraction] = 0.0
    baseline = rng.normal(1.0, 0.3, size=n_voxels)
    Y = np.empty((n, n_voxels, n_reps))
    for v0 in range(0, n_voxels, chunk):
        v1 = min(v0 + chunk, n_voxels)
        m = v1 - v0
        sig_layer = pcs @ rng.standard_normal((k, m))
        sig_other = shared @ rng.standard_normal((shared.shape[1], m))
        sig_layer /= sig_layer.std(axis=0)
        sig_other /= sig_other.std(axis=0)
        sig = np.sqrt(layer_share) * sig_layer + np.sqrt(1.0 - layer_share) * sig_other
        sig *= snr[None, v0:v1]
        Y[:, v0:v1, :] = (baseline[None, v0:v1] + sig)[:, :, None] + rng.standard_normal((n, m, n_reps))
    return Y


def make_layer(n_units=4096, n_voxels=7694, n_stimuli=165, n_reps=3, seed=0, **kw):
    """One synthetic layer: ``X`` (stimuli, units) float32 and ``Y`` (stimuli, voxels, reps) float64.

    Deterministic for a given ``seed``; the first voxels of a larger layer are not the same
    as those of a smaller one (draws are sized by ``n_voxels``), so subsets should be taken
    by slicing ``Y``.
    """
    rng = np.random.default_rng(seed)
    X = make_activations(rng, n_stimuli=n_stimuli, n_units=n_units,
                         spectrum_decay=kw.pop("spectrum_decay", 1.0))
    Y = make_responses(rng, X, n_voxels, n_reps=n_reps, **kw)
    return X, Y


def describe(X, splits=None):
    """Spectrum summary of the first split's centred train Gram (for the README / logs)."""
    if splits is None:
        from fastenc import seed_splits

        splits = seed_splits()
    tr = np.flatnonzero(splits[0])
    Xt = X[tr].astype(np.float64)
    Xt -= Xt.mean(axis=0)
    lam = np.linalg.eigvalsh(Xt @ Xt.T)[::-1]
    lam = lam[lam > lam[0] * 1e-12]
    return dict(n_nonzero=int(lam.size), lam_max=float(lam[0]), lam_min=float(lam[-1]),
                cond=float(lam[0] / lam[-1]), frac_nonneg=float((X >= 0).mean()),
                frac_zero=float((X == 0).mean()))

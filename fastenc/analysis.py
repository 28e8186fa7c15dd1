"""docs/method.md §5: per-voxel summaries and the analysis stage.

Every function here is pure: numpy arrays / pandas objects in, numpy arrays / pandas objects
out, no file I/O and no change to numpy's global random state (the reference study's calls on
the legacy global stream are reproduced with private :class:`numpy.random.RandomState`
instances seeded the same way, which give bit-identical draws).

Conventions
-----------
* ``values`` arrays of the regression stage are (n_voxels, n_splits) per layer; the analysis
  functions take them stacked over layers, **in registry order**: (n_layers, n_voxels, n_splits).
* ``subj_idx`` is one participant label per voxel; results are indexed by the sorted unique
  labels.
* NaN: the reference study takes plain ``np.median`` (and ``np.mean``), which propagate NaN.
  fastenc does the same: a NaN split value makes that voxel's median NaN; a NaN among a
  voxel's selection values (the values compared across layers) makes its best layer undefined
  (reported as ``-1``) and its score NaN; a NaN voxel score makes its participant's median NaN.
  The regression stage's ``r2_test_c`` is NaN-free, except for voxels omitted with
  ``score_layer(..., nan_policy="omit")``, so this matters for those and user-supplied inputs. Clipping at 1 uses ``np.minimum`` (NaN stays NaN).

Best layer on independent splits (the headline score)
-----------------------------------------------------
Reference procedure (docs/method.md §5), for iteration ``i = 0 … n_iterations-1``::

    np.random.seed(i)
    for layer in layers:                       # registry order
        for voxel in voxels:                   # in order
            mask = np.array([0,1,0,1,0,1,0,1,0,1], dtype=float)
            np.random.shuffle(mask)            # fresh shuffle per layer x voxel
            selection = median(values[layer, voxel][mask == 1])   # clipped at 1 for r2_c
            readout   = median(values[layer, voxel][mask == 0])   # clipped at 1 for r2_c
    best = argmax over layers of selection     # one call over all voxels: np.random.seed(0),
                                               # then voxel by voxel, where >= 2 layers tie
                                               # for the max: np.random.choice(tied_layers)
    score[voxel] = readout[best[voxel], voxel]

then the median over each participant's voxels, and the mean over the iterations.

The masks are a deterministic function of the legacy MT19937 stream. numpy's legacy
``shuffle`` of a 1-D array is a Fisher–Yates pass ``for i = n-1 … 1: j = random_interval(i);
swap(x[i], x[j])`` where ``random_interval(i)`` draws 32-bit words and keeps the first one whose
low bits (masked with the smallest ``2**k - 1 >= i``) are ``<= i``. fastenc draws the raw 32-bit
words with ``RandomState(i).randint(0, 2**32, dtype=np.uint32)`` (the full-range path returns
``next_uint32`` unchanged) and replays that Fisher–Yates in Numba (the kernels live in
``fastenc/_core/analysis.py``); ``tests/test_analysis.py``
proves the masks bit-identical to the real ``np.random.shuffle`` for many seeds.
Because the stream runs layer by layer, the masks of (iteration, n_layers, n_voxels) are the
first ``n_layers * n_voxels`` shuffles of stream ``i``: they are cached per (iteration,
n_voxels) and extended on demand, so every model with that many voxels reuses them.

Timing (2-core machine, NH2015-sized model: 9 layers x 7,694 voxels x 10 iterations): the
literal reference loop (tests/naive_analysis.py) ~13 s; the literal shuffle loop for the masks
alone ~1.2 s; fastenc ~0.33 s with a cold mask cache, ~0.085 s warm.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ._core.analysis import fisher_yates_masks, selection_readout_bits
from ._validation import as_float_array as _as_float_array
from ._validation import check_subjects as _check_subj
from ._validation import layer_values as _check_layer_values
from .constants import N_ITERATIONS, N_SPLITS, ROI_ORDER
from .stats import (BootstrapResult, PermutationResult, bootstrap_mean_test, permutation_mean_difference,
                    within_subject_sem)

__all__ = [
    "N_SPLITS",
    "SPLIT_MASK",
    "ROI_ORDER",
    "voxel_summary",
    "subject_medians",
    "within_subject_sem",
    "LayerCurve",
    "across_layer_curve",
    "split_masks",
    "clear_mask_cache",
    "argmax_random_ties",
    "BestLayerResult",
    "best_layer_independent_splits",
    "half_split_masks",
    "best_layer_any_splits",
    "spectemp_independent_splits",
    "components_independent_splits",
    "most_frequent_layer",
    "mean_test_prediction",
    "joined",
    "across_models_summary",
    "correlation_across",
    "ROI_PAIRS",
    "best_layer_per_roi",
    "roi_model_table",
    "roi_summary",
    "roi_wilcoxon",
    "BootstrapResult",
    "bootstrap_model_comparison",
    "PermutationResult",
    "permutation_component_comparison",
]

#: The float mask shuffled per layer x voxel (docs/method.md §5). 1 = selection split, 0 = readout split.
SPLIT_MASK = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1], dtype=float)


# --------------------------------------------------------------------------------------
# per-voxel summaries, per-subject aggregation, within-subject SEM
# --------------------------------------------------------------------------------------
def voxel_summary(arrays: Mapping[str, np.ndarray], clip_name: str = "r2_test_c") -> pd.DataFrame:
    """Per-voxel mean / median / std (ddof 0) over splits of each (n_voxels, n_splits) array.

    Returns a DataFrame with one row per voxel and, for each ``name`` in input order, the columns
    ``mean_<name>``, ``median_<name>``, ``std_<name>``. ``median_<clip_name>`` (default
    ``median_r2_test_c``) is clipped at 1 *after* the median; nothing else is clipped.
    NaN propagates (plain ``np.mean`` / ``np.median`` / ``np.std``).
    """
    if not arrays:
        raise ValueError("arrays is empty")
    cols: dict[str, np.ndarray] = {}
    n_vox = None
    for name, a in arrays.items():
        arr = _as_float_array(a, name, 2)
        if n_vox is None:
            n_vox = arr.shape[0]
        elif arr.shape[0] != n_vox:
            raise ValueError(f"{name} has {arr.shape[0]} voxels, expected {n_vox}")
        if arr.shape[1] == 0:
            raise ValueError(f"{name} has no splits")
        med = np.median(arr, axis=1)
        if name == clip_name:
            med = np.minimum(med, 1.0)
        cols[f"mean_{name}"] = np.mean(arr, axis=1)
        cols[f"median_{name}"] = med
        cols[f"std_{name}"] = np.std(arr, axis=1, ddof=0)
    return pd.DataFrame(cols)


def subject_medians(values, subj_idx) -> pd.Series:
    """Median (``np.median``, NaN propagates) of per-voxel ``values`` within each participant.

    ``values`` is (n_voxels,) or (n_rows, n_voxels); returns a Series (or a DataFrame with
    rows x subjects) indexed by the sorted unique ``subj_idx``.
    """
    arr = _as_float_array(values, "values", (1, 2))
    subj = _check_subj(subj_idx, arr.shape[-1])
    subjects = np.unique(subj)
    med = np.stack([np.median(arr[..., subj == s], axis=-1) for s in subjects], axis=-1)
    if arr.ndim == 1:
        return pd.Series(med, index=pd.Index(subjects, name="subj_idx"))
    return pd.DataFrame(med, columns=pd.Index(subjects, name="subj_idx"))


@dataclass(frozen=True)
class LayerCurve:
    """Across-layer curve of one model: ``per_subject`` (subjects x layers) medians over each
    subject's voxels, ``mean`` and ``sem`` (within-subject SEM over the layers) per layer."""
    per_subject: pd.DataFrame
    mean: np.ndarray
    sem: np.ndarray

    @property
    def layers(self) -> list:
        return list(self.per_subject.columns)


def across_layer_curve(values, subj_idx, layer_names: Sequence[str] | None = None) -> LayerCurve:
    """Across-layer curve (docs/method.md §5) from (n_layers, n_voxels) clipped median r2_c values.

    Per subject the median over its voxels per layer -> (subjects x layers); the curve is the
    mean over subjects with the within-subject SEM over the layers (the plotted conditions).
    """
    arr = _as_float_array(values, "values", 2)
    n_layers = arr.shape[0]
    if n_layers == 0:
        raise ValueError("values has no layers")
    if layer_names is None:
        layer_names = list(range(n_layers))
    elif len(layer_names) != n_layers:
        raise ValueError(f"{len(layer_names)} layer names for {n_layers} layers")
    per_subj = subject_medians(arr, subj_idx).T  # subjects x layers
    per_subj.columns = pd.Index(list(layer_names), name="layer")
    m = per_subj.to_numpy()
    return LayerCurve(per_subject=per_subj, mean=m.mean(axis=0), sem=within_subject_sem(m))


# --------------------------------------------------------------------------------------
# split masks from the legacy stream
# --------------------------------------------------------------------------------------
class _MaskStream:
    """The shuffles of one legacy stream (seed), generated lazily and kept."""

    def __init__(self, seed: int):
        self.rs = np.random.RandomState(seed)
        self.leftover = np.empty(0, dtype=np.uint32)
        self.bits = np.empty(0, dtype=np.uint16)
        self.n = 0

    def extend_to(self, n_total: int) -> None:
        if n_total <= self.n:
            return
        cap = max(n_total, int(self.bits.shape[0] * 1.5))
        if cap > self.bits.shape[0]:
            new = np.empty(cap, dtype=np.uint16)
            new[: self.n] = self.bits[: self.n]
            self.bits = new
        while self.n < n_total:
            need = n_total - self.n
            # ~11.8 words per shuffle on average; draw a little more, loop if short
            n_draw = int(need * 12.2) + 64
            raw = np.concatenate([self.leftover,
                                  self.rs.randint(0, 2 ** 32, size=n_draw, dtype=np.uint32)])
            done, used = fisher_yates_masks(raw, self.bits, self.n, need)
            self.n += int(done)
            self.leftover = raw[used:].copy()


_MASK_CACHE: dict[int, _MaskStream] = {}
_MASK_LOCK = threading.Lock()


def clear_mask_cache() -> None:
    """Forget the cached split masks."""
    with _MASK_LOCK:
        _MASK_CACHE.clear()


def _mask_bits(seed: int, n: int) -> np.ndarray:
    with _MASK_LOCK:
        st = _MASK_CACHE.get(seed)
        if st is None:
            st = _MASK_CACHE[seed] = _MaskStream(seed)
        st.extend_to(n)
        return st.bits[:n].copy()


def _mask_loop(seed: int, n: int) -> np.ndarray:
    """The literal reference loop (on a private RandomState), as 10-bit integers."""
    rs = np.random.RandomState(seed)
    out = np.empty(n, dtype=np.uint16)
    weights = 1 << np.arange(N_SPLITS)
    for k in range(n):
        mask = SPLIT_MASK.copy()
        rs.shuffle(mask)
        out[k] = int((mask.astype(np.int64) * weights).sum())
    return out


def split_masks(iteration: int, n_layers: int, n_voxels: int, method: str = "numba") -> np.ndarray:
    """Selection masks of one iteration: bool (n_layers, n_voxels, 10), True where the shuffled
    float mask is 1 (selection splits), False where it is 0 (readout splits).

    Identical to ``np.random.seed(iteration)`` followed by one ``np.random.shuffle`` of
    ``SPLIT_MASK`` per layer, per voxel (layer-major). ``method="numba"`` (default) replays the
    shuffle on the raw stream and caches it; ``method="loop"`` runs the literal loop.
    """
    if n_layers < 1 or n_voxels < 1 or iteration < 0:
        raise ValueError("need iteration >= 0, n_layers >= 1, n_voxels >= 1")
    n = int(n_layers) * int(n_voxels)
    if method == "numba":
        bits = _mask_bits(int(iteration), n)
    elif method == "loop":
        bits = _mask_loop(int(iteration), n)
    else:
        raise ValueError(f"unknown method {method!r}")
    mask = ((bits[:, None] >> np.arange(N_SPLITS, dtype=np.uint16)) & 1).astype(bool)
    return mask.reshape(n_layers, n_voxels, N_SPLITS)


# --------------------------------------------------------------------------------------
# argmax over layers with the study's random tie-breaking
# --------------------------------------------------------------------------------------
def argmax_random_ties(values, seed: int = 0) -> np.ndarray:
    """Best layer per voxel of a (n_layers, n_voxels) array, ties broken at random.

    Reproduces the reference call: ``np.random.seed(seed)`` (0 in the study), then voxel by
    voxel in order, where two or more layers equal the voxel's maximum (exact ``==``),
    ``np.random.choice(tied_layer_indices)``; no draw where the maximum is unique. Uses a private
    ``RandomState(seed)`` (the same stream) so the global state is untouched. A voxel whose values
    contain NaN has no defined maximum: its best layer is ``-1`` and no draw is made.
    """
    arr = _as_float_array(values, "values", 2)
    if arr.shape[0] == 0:
        raise ValueError("values has no layers")
    n_vox = arr.shape[1]
    best = np.full(n_vox, -1, dtype=np.int64)
    if n_vox == 0:
        return best
    mx = arr.max(axis=0)  # NaN where any NaN
    is_max = arr == mx[None, :]
    n_tied = is_max.sum(axis=0)
    ok = n_tied >= 1
    best[ok] = np.argmax(is_max[:, ok], axis=0)
    tied_vox = np.flatnonzero(n_tied >= 2)
    if tied_vox.size:
        rs = np.random.RandomState(seed)
        for v in tied_vox:
            best[v] = rs.choice(np.flatnonzero(is_max[:, v]))
    return best


# --------------------------------------------------------------------------------------
# best layer on independent splits
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BestLayerResult:
    """Result of :func:`best_layer_independent_splits`.

    * ``subject_scores``: Series (index ``subj_idx``) - per participant, mean over iterations of
      the median over its voxels of the readout at the best layer.
    * ``per_iteration``: DataFrame (iterations x participants) of those per-iteration medians.
    * ``voxel_scores``: (n_iterations, n_voxels) readout at the best layer.
    * ``best_layer``: (n_iterations, n_voxels) int, 0-based layer index (-1 where undefined).
    * ``score``: mean of ``subject_scores`` over participants (the bar height).
    """
    subject_scores: pd.Series
    per_iteration: pd.DataFrame
    voxel_scores: np.ndarray
    best_layer: np.ndarray

    @property
    def score(self) -> float:
        return float(np.mean(self.subject_scores.to_numpy()))


def _selection_readout(values: np.ndarray, mask: np.ndarray, clip: bool):
    """numpy form: medians over the mask-1 (selection) and mask-0 (readout) splits."""
    L, V, S = values.shape
    half = S // 2
    sel = np.median(values[mask].reshape(L, V, half), axis=-1)
    rd = np.median(values[~mask].reshape(L, V, S - half), axis=-1)
    if clip:
        sel = np.minimum(sel, 1.0)
        rd = np.minimum(rd, 1.0)
    return sel, rd


def _independent_split_iterations(values: np.ndarray, clip: bool, n_iterations: int,
                                  mask_method: str = "numba"):
    if n_iterations < 1:
        raise ValueError(f"n_iterations must be >= 1, got {n_iterations}")
    L, V, _ = values.shape
    scores = np.empty((n_iterations, V))
    best_all = np.empty((n_iterations, V), dtype=np.int64)
    cols = np.arange(V)
    for i in range(n_iterations):
        if mask_method == "numba":
            sel, rd = selection_readout_bits(values, _mask_bits(i, L * V), bool(clip))
        elif mask_method == "half":
            sel, rd = _selection_readout(values, half_split_masks(i, L, V, values.shape[2]), clip)
        else:
            sel, rd = _selection_readout(values, split_masks(i, L, V, method=mask_method), clip)
        best = argmax_random_ties(sel, seed=0)
        sc = np.full(V, np.nan)
        ok = best >= 0
        sc[ok] = rd[best[ok], cols[ok]]
        scores[i] = sc
        best_all[i] = best
    return scores, best_all


def best_layer_independent_splits(values, subj_idx, clip: bool = True, n_iterations: int = N_ITERATIONS,
                                  mask_method: str = "numba") -> BestLayerResult:
    """Headline score: best layer on independent splits (docs/method.md §5; see module docstring).

    ``values``: (n_layers, n_voxels, 10) per-split scores (r2_test_c for neural targets), layers in
    registry order. ``clip`` clips selection and readout medians at 1 (use it for r2_c).
    """
    arr = _check_layer_values(values)
    subj = _check_subj(subj_idx, arr.shape[1])
    scores, best = _independent_split_iterations(arr, clip, n_iterations, mask_method)
    per_iter = subject_medians(scores, subj)
    per_iter.index = pd.RangeIndex(n_iterations, name="iteration")
    subj_scores = per_iter.mean(axis=0, skipna=False)  # NaN propagates, like np.mean
    subj_scores.name = "score"
    return BestLayerResult(subject_scores=subj_scores, per_iteration=per_iter,
                           voxel_scores=scores, best_layer=best)


def half_split_masks(iteration: int, n_layers: int, n_voxels: int, n_splits: int) -> np.ndarray:
    """Selection masks for any number of splits: bool (n_layers, n_voxels, n_splits), True on a
    fresh random ``n_splits // 2`` of the splits per layer x voxel (the selection splits), False on
    the others (the readout splits), drawn from ``RandomState(iteration)``.

    The generalisation of :func:`split_masks` (the study's shuffled ``[0,1,0,1,...]`` of its 10
    splits) to other split counts, e.g. 5 folds: 2 selection and 3 readout splits.

    Examples
    --------
    >>> m = half_split_masks(0, 2, 3, 5)
    >>> m.shape, m.sum(axis=-1).tolist()
    ((2, 3, 5), [[2, 2, 2], [2, 2, 2]])
    """
    if n_layers < 1 or n_voxels < 1 or iteration < 0 or n_splits < 2:
        raise ValueError("need iteration >= 0, n_layers >= 1, n_voxels >= 1, n_splits >= 2")
    keys = np.random.RandomState(int(iteration)).random_sample((int(n_layers), int(n_voxels), int(n_splits)))
    order = np.argsort(keys, axis=-1, kind="stable")
    mask = np.zeros(keys.shape, dtype=bool)
    np.put_along_axis(mask, order[..., : int(n_splits) // 2], True, axis=-1)
    return mask


def best_layer_any_splits(values, subj_idx=None, clip: bool = True,
                          n_iterations: int = N_ITERATIONS) -> BestLayerResult:
    """Best layer on independent splits (docs/method.md §5) for any number of splits >= 2, with or
    without participants (user datasets: k-fold, grouped or shuffled splits).

    ``values``: (n_layers, n_targets, n_splits) per-split scores, layers in order. With 10 splits
    and ``subj_idx`` given this is :func:`best_layer_independent_splits` (the study's masks, bit
    for bit). With another number of splits S, iteration ``i`` selects on a fresh random
    ``S // 2`` of the splits per layer x target (:func:`half_split_masks`, ``RandomState(i)``) and
    reads out on the other ``S - S // 2``; the rest is the study's code: medians (clipped at 1
    with ``clip``), argmax over layers with random ties (re-seeded 0), readout at the best layer,
    median over each participant's targets, mean over the iterations.

    ``subj_idx`` None: every target is its own unit (``subject_scores`` is indexed by target
    position 0..n_targets-1: each target's mean readout over the iterations).
    """
    arr = _as_float_array(values, "values", 3)
    n_layers, n_vox, n_splits = arr.shape
    if n_layers == 0 or n_vox == 0 or n_splits < 2:
        raise ValueError(f"values must be (layers >= 1, targets >= 1, splits >= 2), got shape {arr.shape}")
    if subj_idx is not None and n_splits == N_SPLITS:
        return best_layer_independent_splits(arr, subj_idx, clip=clip, n_iterations=n_iterations)
    subj = None if subj_idx is None else _check_subj(subj_idx, n_vox)
    scores, best = _independent_split_iterations(arr, clip, n_iterations,
                                                 "numba" if n_splits == N_SPLITS else "half")
    if subj is None:
        per_iter = pd.DataFrame(scores, columns=pd.RangeIndex(n_vox, name="subj_idx"))
    else:
        per_iter = subject_medians(scores, subj)
    per_iter.index = pd.RangeIndex(n_iterations, name="iteration")
    subj_scores = per_iter.mean(axis=0, skipna=False)
    subj_scores.name = "score"
    return BestLayerResult(subject_scores=subj_scores, per_iteration=per_iter, voxel_scores=scores,
                           best_layer=best)


def spectemp_independent_splits(values, subj_idx, clip: bool = True,
                                n_iterations: int = N_ITERATIONS) -> BestLayerResult:
    """SpectroTemporal baseline: the same loop on its single layer; ``values`` (n_voxels, 10).

    With one layer the best layer is always that layer and the score is the readout median over
    the mask-0 splits (the masks are the first n_voxels shuffles of each stream)."""
    arr = _as_float_array(values, "values", (2, 3))
    if arr.ndim == 2:
        arr = arr[None]
    if arr.shape[0] != 1:
        raise ValueError(f"spectemp has one layer, got values of shape {arr.shape}")
    return best_layer_independent_splits(arr, subj_idx, clip=clip, n_iterations=n_iterations)


def components_independent_splits(values, component_names: Sequence[str] | None = None,
                                  clip: bool = False, n_iterations: int = N_ITERATIONS,
                                  layer_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Components (no participants): the same loop on uncorrected r2 per component.

    ``values``: (n_layers, n_components, 10). Returns a DataFrame indexed by component with
    ``score`` (mean over iterations of the readout at the best layer), ``iter_0 … iter_{n-1}``
    (per-iteration readouts) and ``best_layer_mode`` (most frequent best layer, 0-based; ties
    broken by :func:`most_frequent_layer`: as the study did when ``layer_names`` are given).
    """
    arr = _check_layer_values(values)
    n_comp = arr.shape[1]
    if component_names is None:
        component_names = list(range(n_comp))
    elif len(component_names) != n_comp:
        raise ValueError(f"{len(component_names)} names for {n_comp} components")
    scores, best = _independent_split_iterations(arr, clip, n_iterations)
    df = pd.DataFrame(scores.T, index=pd.Index(list(component_names), name="component"),
                      columns=[f"iter_{i}" for i in range(n_iterations)])
    df.insert(0, "score", scores.mean(axis=0))
    df["best_layer_mode"] = most_frequent_layer(best, layer_names)
    return df


def most_frequent_layer(best, layer_names: Sequence[str] | None = None, seed: int = 0) -> np.ndarray:
    """Per component, the layer chosen most often as its best layer over the iterations.

    ``best``: (n_iterations, n_components) 0-based layer indices (-1: undefined, not counted).
    With ``layer_names`` (one model version's layers), ties are broken as the study did for the
    layer whose predictions it plotted (METHOD §5, Fig. 4): it counted the layers by *name*, in
    sorted (lexicographic) order of the names; where the most frequent count is above 1, a
    uniform choice among the tied names from one ``RandomState(seed)`` stream per model version,
    components in order (a single most frequent layer draws nothing); where every layer was
    chosen once, the first name in that order. Without ``layer_names``: the lowest index among
    the tied layers. Returns (n_components,) int, -1 where no iteration defined a layer.

    Examples
    --------
    >>> most_frequent_layer(np.array([[0, 2], [1, 2], [1, 0]]))
    array([1, 2])
    >>> most_frequent_layer(np.array([[0], [1]]), layer_names=["relu", "conv"])  # each once: 'conv'
    array([1])
    """
    best = np.asarray(best)
    if best.ndim != 2:
        raise ValueError(f"best must be (iterations, components), got shape {best.shape}")
    rs = np.random.RandomState(seed) if layer_names is not None else None
    out = np.full(best.shape[1], -1, dtype=np.int64)
    for c in range(best.shape[1]):
        b = best[:, c]
        b = b[b >= 0]
        if not b.size:
            continue
        if layer_names is None:
            out[c] = int(np.bincount(b).argmax())
            continue
        names = np.array([str(layer_names[i]) for i in b])
        uniq, counts = np.unique(names, return_counts=True)  # sorted names, as the study's groupby
        if counts.max() > 1:
            pick = str(rs.choice(uniq[counts == counts.max()]))
        else:
            pick = str(uniq[0])
        out[c] = [str(n) for n in layer_names].index(pick)
    return out


def mean_test_prediction(predictions) -> tuple:
    """Each stimulus's prediction over the splits where it was a test stimulus, as the study
    combined them for its predicted-vs-measured plots (the mean over those splits).

    ``predictions``: (..., n_splits, n_stimuli), NaN where the stimulus was in the train set
    (``LayerScores.predictions``). Returns ``(mean, n)``: the mean over splits (NaN where the
    stimulus was never tested) and the number of splits it was tested in.
    """
    P = np.asarray(predictions, dtype=np.float64)
    ok = np.isfinite(P)
    n = ok.sum(axis=-2)
    total = np.where(ok, P, 0.0).sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
    return mean, n


# --------------------------------------------------------------------------------------
# across models
# --------------------------------------------------------------------------------------
def joined(models: Sequence) -> str:
    """The ``pooled_models`` cell of an output table: model names joined by ``;``."""
    return ";".join(str(m) for m in models)


def correlation_across(x, y, min_n: int = 3) -> tuple:
    """Pearson r (two-sided p) between paired values ``x`` and ``y`` (e.g. one score per model on
    two datasets, the study's consistency scatters). Pairs with a NaN are dropped first.

    Returns ``(r, p, n)``: ``n`` the pairs used; ``r`` and ``p`` are NaN when fewer than ``min_n``
    pairs remain (two points always give r = ±1) or either side is constant.

    Examples
    --------
    >>> r, p, n = correlation_across([0.1, 0.4, 0.5, np.nan], [0.2, 0.35, 0.6, 0.1])
    >>> round(r, 4), n
    (0.9113, 3)
    >>> correlation_across([1.0, 2.0], [2.0, 1.0])
    (nan, nan, 2)
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of one length, got {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(ok.sum())
    if n < max(int(min_n), 2) or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan"), n
    r, p = stats.pearsonr(x, y)
    return float(r), float(p), n


def across_models_summary(df: pd.DataFrame, spectemp: str | None = "spectemp",
                          pool: Sequence[str] | None = None) -> pd.DataFrame:
    """Bar heights and error bars across models.

    ``df``: long table with columns ``model``, ``randnetw`` (bool), ``subj_idx``, ``score``
    (one row per model x randnetw x participant, e.g. from ``BestLayerResult.subject_scores``).
    For each ``randnetw`` panel the conditions are that panel's models plus the ``spectemp``
    baseline (if present, under ``randnetw == False``); every condition must have the same
    participants.

    ``pool``: the models whose within-subject SEM is pooled (docs/method.md §5, "model sets": the
    figure's set, e.g. FIG_2_5_MODEL_LIST, as far as present). A panel's pooled conditions are
    its versions of the ``pool`` models plus the baseline; the SEM of those rows is computed over
    them only. Rows of models outside ``pool`` get the SEM over all conditions of their panel.
    Default (None): every row's SEM is pooled over all conditions of its panel.

    Returns one row per (randnetw, model) with ``mean`` (over participants), ``sem``
    (within-subject SEM), ``n_subjects``, ``in_pool`` and ``pooled_models`` (the conditions that
    row's SEM was pooled over, ``;``-joined), sorted by ``randnetw`` then descending ``mean``.
    """
    need = {"model", "randnetw", "subj_idx", "score"}
    if not need.issubset(df.columns):
        raise ValueError(f"df needs columns {sorted(need)}, has {list(df.columns)}")
    if df.duplicated(["model", "randnetw", "subj_idx"]).any():
        raise ValueError("duplicate (model, randnetw, subj_idx) rows")
    d = df.copy()
    d["randnetw"] = d["randnetw"].astype(bool)
    is_st = (d["model"] == spectemp) if spectemp is not None else pd.Series(False, index=d.index)
    base = d[is_st & ~d["randnetw"]]
    pool_set = None if pool is None else set(pool)
    rows = []
    for rn in sorted(d.loc[~is_st, "randnetw"].unique()):
        panel = pd.concat([d[~is_st & (d["randnetw"] == rn)], base])
        wide = panel.pivot(index="subj_idx", columns="model", values="score")
        present = panel.groupby("model")["subj_idx"].nunique()
        missing = present.index[present < wide.shape[0]].tolist()
        if missing:
            raise ValueError(f"models {missing} lack some participants (randnetw={rn})")
        conds = list(wide.columns)
        groups = {m: conds for m in conds}
        if pool_set is not None:
            pooled = [m for m in conds if m in pool_set or m == spectemp]
            groups.update({m: pooled for m in pooled})
        sems = {}
        for g in {tuple(v) for v in groups.values()}:
            sem = (within_subject_sem(wide[list(g)].to_numpy()) if wide.shape[0] >= 2
                   else np.full(len(g), np.nan))
            sems[g] = dict(zip(g, sem))
        for model in conds:
            g = tuple(groups[model])
            rows.append({"randnetw": bool(rn), "model": model,
                         "is_baseline": model == spectemp,
                         "mean": float(np.mean(wide[model].to_numpy())), "sem": float(sems[g][model]),
                         "n_subjects": int(wide.shape[0]),
                         "in_pool": pool_set is None or model in pool_set or model == spectemp,
                         "pooled_models": joined(g)})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    return (out.sort_values(["randnetw", "mean"], ascending=[True, False], kind="stable")
               .reset_index(drop=True))


# --------------------------------------------------------------------------------------
# best layer per anatomical ROI
# --------------------------------------------------------------------------------------
#: ROI pairs compared across models (docs/method.md §5): Primary vs each non-primary ROI, then the
#: non-primary ROIs against each other (the study ran these with ``scatter_anat_roi_across_models``).
ROI_PAIRS = (("Primary", "Anterior"), ("Primary", "Lateral"), ("Primary", "Posterior"),
             ("Anterior", "Lateral"), ("Anterior", "Posterior"), ("Lateral", "Posterior"))


def best_layer_per_roi(values, subj_idx, roi_labels, rois: Sequence[str] = ROI_ORDER,
                       clip: bool = True) -> pd.DataFrame:
    """Relative best-layer position per participant x ROI (docs/method.md §5).

    ``values``: (n_layers, n_voxels) clipped median r2_c, or (n_layers, n_voxels, n_splits)
    per-split values (then the median over all splits is taken and clipped at 1 if ``clip``).
    Best layer per voxel = :func:`argmax_random_ties` (re-seed 0, random ties); relative position
    = index / (L - 1) (= (pos - 1)/(L - 1) with 1-based pos). Voxels whose label is not in
    ``rois`` (e.g. missing) are ignored. Returns a long DataFrame with columns ``subj_idx``,
    ``roi``, ``rel_pos`` (median over the participant's voxels in that ROI), ``n_voxels``.
    """
    arr = _as_float_array(values, "values", (2, 3))
    if arr.ndim == 3:
        arr = np.median(arr, axis=2)
    if clip:
        arr = np.minimum(arr, 1.0)
    n_layers, n_vox = arr.shape
    if n_layers < 2:
        raise ValueError(f"relative best-layer position needs >= 2 layers, got {n_layers}")
    subj = _check_subj(subj_idx, n_vox)
    labels = np.asarray(roi_labels, dtype=object)
    if labels.shape != (n_vox,):
        raise ValueError(f"roi_labels must have one entry per voxel ({n_vox}), got {labels.shape}")
    best = argmax_random_ties(arr, seed=0)
    rel = np.where(best >= 0, best / (n_layers - 1), np.nan)
    rows = []
    for s in np.unique(subj):
        for roi in rois:
            sel = (subj == s) & (labels == roi)
            n = int(sel.sum())
            if n:
                rows.append({"subj_idx": s, "roi": roi, "rel_pos": float(np.median(rel[sel])),
                             "n_voxels": n})
    return pd.DataFrame(rows, columns=["subj_idx", "roi", "rel_pos", "n_voxels"])


def roi_model_table(per_model: Mapping[str, pd.DataFrame],
                    rois: Sequence[str] = ROI_ORDER) -> pd.DataFrame:
    """Per model, the mean over participants of :func:`best_layer_per_roi`'s ``rel_pos``.

    Returns a DataFrame indexed by model (input order) with one column per ROI."""
    if not per_model:
        raise ValueError("per_model is empty")
    rows = {}
    for model, t in per_model.items():
        m = t.groupby("roi")["rel_pos"].agg(lambda x: float(np.mean(x.to_numpy())))  # NaN propagates
        rows[model] = [float(m.get(r, np.nan)) for r in rois]
    out = pd.DataFrame.from_dict(rows, orient="index", columns=list(rois))
    out.index.name = "model"
    return out


def roi_summary(per_subject: pd.DataFrame, models: Sequence[str] | None = None,
                rois: Sequence[str] = ROI_ORDER, sem: str = "subjects") -> pd.DataFrame:
    """Across-model summary of the best-layer position per ROI (docs/method.md §5, and §6 for RSA).

    ``per_subject``: long DataFrame with columns ``source_model``, ``randnetw``, ``subj_idx``,
    ``roi``, ``rel_pos`` (one row per model version x participant x ROI, e.g. the rows of
    :func:`best_layer_per_roi` with the model columns added). ``models``: the pooled models
    (docs/method.md §5 "model sets", e.g. FIG_7_MODEL_LIST as far as present); default every model of
    ``per_subject``. Only pooled models get rows.

    Per ``randnetw`` panel and ROI, with the (participants x pooled models) matrix of
    ``rel_pos`` over the participants that have that ROI for every pooled model:
    ``rel_pos_mean`` = mean over participants (``np.mean``, NaN propagates);
    ``rel_pos_yerr`` = within-subject SEM over the pooled models: subtract each participant's
    mean across the pooled models, ``np.std`` (ddof 0) over participants, divided by
    ``sqrt(n_participants - 1)`` (``sem="subjects"``, docs/method.md §5) or by ``sqrt(n_models - 1)``
    (``sem="models"``, the reference study's RSA figure, docs/method.md §6 quirk). NaN with fewer than
    2 pooled models (the error is over models) or 2 participants.

    Returns columns ``source_model, randnetw, roi, rel_pos_mean, rel_pos_yerr,
    n_participants, n_models, pooled_models``; an ROI without participants has NaN values and
    ``n_participants`` 0.
    """
    need = {"source_model", "randnetw", "subj_idx", "roi", "rel_pos"}
    if not need.issubset(per_subject.columns):
        raise ValueError(f"per_subject needs columns {sorted(need)}, has {list(per_subject.columns)}")
    if sem not in ("subjects", "models"):
        raise ValueError(f"sem must be 'subjects' or 'models', got {sem!r}")
    d = per_subject.copy()
    d["randnetw"] = d["randnetw"].astype(bool)
    if d.duplicated(["source_model", "randnetw", "subj_idx", "roi"]).any():
        raise ValueError("duplicate (source_model, randnetw, subj_idx, roi) rows")
    if models is None:
        models = list(dict.fromkeys(d["source_model"]))
    else:
        models = list(dict.fromkeys(models))
    rows = []
    for rn in sorted(d["randnetw"].unique()):
        panel = d[(d["randnetw"] == rn) & d["source_model"].isin(models)]
        pooled = [m for m in models if m in set(panel["source_model"])]
        if not pooled:
            continue
        for roi in rois:
            g = panel[panel["roi"] == roi]
            wide = g.pivot(index="subj_idx", columns="source_model", values="rel_pos")
            wide = wide.reindex(columns=pooled)
            has = g.groupby(["subj_idx", "source_model"]).size().unstack().reindex(columns=pooled)
            keep = has.notna().all(axis=1) if len(has) else pd.Series(dtype=bool)
            M = wide.loc[keep[keep].index].to_numpy(dtype=float) if len(keep) else np.empty((0, len(pooled)))
            n_s, n_m = M.shape
            if n_s >= 2 and n_m >= 2:
                yerr = within_subject_sem(M, n=n_s if sem == "subjects" else n_m)
            else:
                yerr = np.full(n_m, np.nan)
            mean = M.mean(axis=0) if n_s else np.full(n_m, np.nan)
            for j, m in enumerate(pooled):
                rows.append({"source_model": m, "randnetw": bool(rn), "roi": roi,
                             "rel_pos_mean": float(mean[j]), "rel_pos_yerr": float(yerr[j]),
                             "n_participants": int(n_s), "n_models": int(n_m),
                             "pooled_models": joined(pooled)})
    cols = ["source_model", "randnetw", "roi", "rel_pos_mean", "rel_pos_yerr", "n_participants",
            "n_models", "pooled_models"]
    return pd.DataFrame(rows, columns=cols)


def roi_wilcoxon(table: pd.DataFrame, pairs: Sequence[tuple[str, str]] = ROI_PAIRS) -> pd.DataFrame:
    """ROI vs ROI across models, Wilcoxon signed-rank (docs/method.md §5).

    ``table``: models x ROIs (e.g. ``rel_pos_mean`` of :func:`roi_summary` pivoted). Per pair
    ``(roi_1, roi_2)`` (default :data:`ROI_PAIRS`: Primary vs Anterior/Lateral/Posterior, then
    the non-primary ROIs against each other), over the models where both values are finite:
    ``scipy.stats.wilcoxon(table[roi_1], table[roi_2], method="approx")`` (two-sided,
    zero_method="wilcox", no continuity correction): the normal approximation reproduces the
    published p values. Returns one row per pair with ``roi_1``, ``roi_2``, ``statistic``,
    ``p_value``, ``n_models``, ``mean_1``, ``mean_2`` (means over those models); NaN where fewer
    than 2 models remain or every difference is zero.
    """
    rows = []
    for a, b in pairs:
        for r in (a, b):
            if r not in table.columns:
                raise ValueError(f"table lacks column {r!r}")
        x = table[a].to_numpy(float)
        y = table[b].to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        stat = p = np.nan
        if x.size >= 2 and np.any(x != y):
            res = stats.wilcoxon(x, y, method="approx")
            stat, p = float(res.statistic), float(res.pvalue)
        rows.append({"roi_1": a, "roi_2": b, "statistic": stat, "p_value": p, "n_models": int(x.size),
                     "mean_1": float(np.mean(x)) if x.size else np.nan,
                     "mean_2": float(np.mean(y)) if y.size else np.nan})
    return pd.DataFrame(rows, columns=["roi_1", "roi_2", "statistic", "p_value", "n_models",
                                       "mean_1", "mean_2"])


# --------------------------------------------------------------------------------------
# model comparisons (fastenc.stats; the names the study stage calls)
# --------------------------------------------------------------------------------------
#: Subject bootstrap of model 2 against model 1's mean (docs/method.md §5): :func:`fastenc.stats.bootstrap_mean_test`.
bootstrap_model_comparison = bootstrap_mean_test
#: Permutation test of pooled component values (docs/method.md §5): :func:`fastenc.stats.permutation_mean_difference`.
permutation_component_comparison = permutation_mean_difference

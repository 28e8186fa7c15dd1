"""What ``run_all`` returns: typed tables per target, not a string-keyed dict.

Every table is also written as ``<out>/<name>.csv``; :attr:`StudyResults.tables` maps each of
those file names (without ``.csv``) to its DataFrame.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = ["RegressionTables", "ComponentTables", "RSATables", "VoxelTables", "ConsistencyTables", "SeedTables",
           "DatasetTables", "StudyResults"]


@dataclass
class RegressionTables:
    """METHOD §5 for one neural target (``NH2015``, ``B2021``)."""

    #: best-layer-on-independent-splits score per (model version, participant); ``subject-scores_<t>``
    subject_scores: pd.DataFrame
    #: bars and within-subject SEM across models; ``across-models_<t>``
    across_models: pd.DataFrame
    #: mean (SEM) of the clipped median r2_c per layer; ``across-layers_<t>``
    across_layers: pd.DataFrame
    #: best layer per anatomical ROI across the pooled models; ``best-layer-roi_<t>``
    best_layer_roi: pd.DataFrame | None = None
    #: its per-participant rows (not written)
    best_layer_roi_subjects: pd.DataFrame | None = None
    #: Wilcoxon tests between ROIs; ``best-layer-roi-wilcoxon_<t>``
    best_layer_roi_wilcoxon: pd.DataFrame | None = None
    #: subject-bootstrap model comparisons; ``model-comparisons_<t>``
    model_comparisons: pd.DataFrame | None = None

    _files = {"subject_scores": "subject-scores", "across_models": "across-models",
              "across_layers": "across-layers", "best_layer_roi": "best-layer-roi",
              "best_layer_roi_wilcoxon": "best-layer-roi-wilcoxon", "model_comparisons": "model-comparisons"}


@dataclass
class ComponentTables:
    """METHOD §5 for the six NH2015 components."""

    across_models: pd.DataFrame
    model_comparisons: pd.DataFrame | None = None
    #: per model version, component and sound: measured response and the prediction at the
    #: component's most frequent best layer (mean over the splits testing it); ``component-predictions``
    predictions: pd.DataFrame | None = None

    _files = {"across_models": "across-models", "model_comparisons": "model-comparisons",
              "predictions": "component-predictions"}


@dataclass
class RSATables:
    """METHOD §6 for one neural target."""

    subject_scores: pd.DataFrame
    across_models: pd.DataFrame
    best_layer_roi: pd.DataFrame | None = None
    best_layer_roi_subjects: pd.DataFrame | None = None
    best_layer_roi_wilcoxon: pd.DataFrame | None = None
    #: ROI -> mean participant RSM (all sounds, category order)
    roi_matrices: dict = field(default_factory=dict)
    #: the category of each row of those matrices
    category_order: list = field(default_factory=list)
    roi_vs_roi: pd.DataFrame | None = None
    roi_vs_roi_n: pd.DataFrame | None = None

    _files = {"subject_scores": "rsa_subject-scores", "across_models": "rsa_across-models",
              "best_layer_roi": "rsa_best-layer-roi", "best_layer_roi_wilcoxon": "rsa_best-layer-roi-wilcoxon",
              "roi_vs_roi": "rsa_roi-vs-roi"}


@dataclass
class VoxelTables:
    """Voxel maps (paper Fig. 6) and per-ROI across-layer curves of one neural target
    (:mod:`fastenc.study.voxels`)."""

    #: ``voxel-best-layer_<t>.csv``: best layer of every voxel of every model version, written one
    #: version at a time and not held in memory (read it with ``pandas.read_csv``)
    best_layer_path: Path
    #: median subject per flattened-surface coordinate, per model version; ``voxel-median-subject_<t>``
    subject_surface: pd.DataFrame
    #: median over the pooled models per coordinate, trained and permuted; ``voxel-median-model_<t>``
    model_surface: pd.DataFrame | None
    #: preferred-layer voxel counts per version and the colour-scale limit; ``voxel-layer-counts_<t>``
    layer_counts: pd.DataFrame
    #: across-layer curves per anatomical ROI; ``across-layers-roi_<t>``
    across_layers_roi: pd.DataFrame | None = None
    #: the study's ``.mat`` files written (``--export-surface-mat``)
    mat_files: list = field(default_factory=list)

    _files = {"subject_surface": "voxel-median-subject", "model_surface": "voxel-median-model",
              "layer_counts": "voxel-layer-counts", "across_layers_roi": "across-layers-roi"}


@dataclass
class ConsistencyTables:
    """Consistency of the model scores across datasets, methods and trained/permuted weights
    (:mod:`fastenc.study.consistency`)."""

    #: one row per panel and model: ``panel, comparison, method, target, networks, x_label,
    #: y_label, source_model, x, y``; ``consistency``
    scores: pd.DataFrame
    #: Pearson r per panel (``scope`` across models), and for the layer-wise panels across all
    #: layers and across each model's layers; ``consistency-correlations``
    correlations: pd.DataFrame
    #: per layer its across-layer score on NH2015 and B2021; ``consistency-layers``
    layers: pd.DataFrame | None = None

    _files = {"scores": "consistency", "correlations": "consistency-correlations", "layers": "consistency-layers"}

    def named(self) -> dict:
        return {stem: getattr(self, attr) for attr, stem in self._files.items() if getattr(self, attr) is not None}


class SeedTables(ConsistencyTables):
    """Seed 1 vs seed 2 of the model pairs of FIG2_SEED_PAIRS (``seeds``: one row per panel and
    pair, ``seed2_model`` beside ``source_model``; ``seeds-correlations``: r across the pairs)."""

    _files = {"scores": "seeds", "correlations": "seeds-correlations"}


@dataclass
class DatasetTables:
    """One manifest dataset scored by ``run_all(datasets=...)`` (:mod:`fastenc.study.datasets`);
    every table is written as ``<out>/dataset-<name>_<table>.csv`` (docs/outputs.md)."""

    name: str
    #: ``dataset-<name>``: the prefix of the files and the dataset's folder under ``regression/``
    key: str
    #: ``r2_test_c`` (noise-corrected, >= 2 repetitions) or ``r2_test`` (one repetition)
    metric: str
    #: per model version, layer, participant and ROI (``all`` = pooled): median over targets; ``layers``
    layers: pd.DataFrame
    #: per model version, ROI and layer: mean over units ± within-unit SEM; ``across-layers``
    across_layers: pd.DataFrame
    #: per model version and ROI: best layer on independent splits, mean ± SEM over units; ``across-models``
    across_models: pd.DataFrame
    #: per model version and target: its headline score and most chosen layer; ``target-scores``
    target_scores: pd.DataFrame
    #: per model version, ROI and participant (with a participant column); ``subject-scores``
    subject_scores: pd.DataFrame | None = None
    #: (model, randnetw) -> LayerCurve over all targets (for the figures; not written)
    curves: dict = field(default_factory=dict, repr=False)
    #: the ROIs of the targets table, in order of appearance (empty without an roi column)
    rois: list = field(default_factory=list)
    #: the regression units of the run (``target`` = :attr:`key`)
    units: pd.DataFrame | None = None
    #: figures drawn (PNG)
    figures: list = field(default_factory=list)

    _files = {"layers": "layers", "across_layers": "across-layers", "across_models": "across-models",
              "target_scores": "target-scores", "subject_scores": "subject-scores"}

    def named(self) -> dict:
        """``dataset-<name>_<table>`` -> DataFrame, for the tables written."""
        return {f"{self.key}_{stem}": getattr(self, attr) for attr, stem in self._files.items()
                if getattr(self, attr) is not None}

    def long_scores(self, roi: str = "all") -> pd.DataFrame:
        """``model, randnetw, subj_idx, score``: the headline score per model version and unit
        (participant, or target without participants) over the targets of ``roi``, as
        :func:`fastenc.analysis.across_models_summary` and the across-model figure take it."""
        if self.subject_scores is not None:
            d = self.subject_scores[self.subject_scores["roi"] == roi]
            d = d.rename(columns={"participant": "subj_idx"})
        else:
            d = self.target_scores if roi == "all" else self.target_scores[self.target_scores["roi"] == roi]
            d = d.rename(columns={"target_id": "subj_idx"})
        return d.rename(columns={"source_model": "model"})[["model", "randnetw", "subj_idx", "score"]]


def _named(by_target: dict) -> dict:
    out = {}
    for t, tabs in by_target.items():
        for attr, stem in tabs._files.items():
            df = getattr(tabs, attr)
            if df is not None:
                out[f"{stem}_{t}"] = df
    return out


@dataclass
class StudyResults:
    """Results of :func:`fastenc.run_all`.

    Attributes
    ----------
    out : Path
        The output folder.
    regression_units : DataFrame
        One row per regression unit: ``target, model, randnetw, layer, status, reason``.
    regression : dict
        Neural target -> :class:`RegressionTables`.
    components : dict
        ``"NH2015comp"`` -> :class:`ComponentTables` (when that target ran).
    rsa : dict
        Neural target -> :class:`RSATables` (empty without the RSA stage).
    voxels : dict
        Neural target -> :class:`VoxelTables` (voxel maps, per-ROI across-layer curves).
    dimensionality : DataFrame or None
        Effective dimensionality of every layer with the layer's score; ``dimensionality``.
    consistency : ConsistencyTables or None
        Scores per model paired across targets / methods / versions and their correlations
        across models (``consistency``, ``consistency-correlations``, ``consistency-layers``).
    seeds : SeedTables or None
        Seed 1 vs seed 2 per FIG2_SEED_PAIRS pair present (``seeds``, ``seeds-correlations``).
    skipped : list of (figure, reason)
        Figures not drawn because the models they need are absent (also ``figures/SKIPPED.txt``).
    figures : list of Path
        Figures drawn (PNG; a PDF beside each).
    elapsed_s : float
        Wall time of the run.
    report : Path or None
        ``<out>/report.html`` (written with the figures).
    datasets : dict
        Dataset name -> :class:`DatasetTables` (manifest datasets scored in the run).

    Examples
    --------
    >>> r = StudyResults(out=Path("o"), regression_units=pd.DataFrame(), regression={},
    ...                  components={"NH2015comp": ComponentTables(pd.DataFrame({"a": [1]}))})
    >>> list(r.tables), r["across-models_NH2015comp"]["a"].tolist()
    (['across-models_NH2015comp'], [1])
    """

    out: Path
    regression_units: pd.DataFrame
    regression: dict
    components: dict = field(default_factory=dict)
    rsa: dict = field(default_factory=dict)
    voxels: dict = field(default_factory=dict)
    dimensionality: pd.DataFrame | None = None
    consistency: ConsistencyTables | None = None
    seeds: SeedTables | None = None
    figures: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    elapsed_s: float = float("nan")
    report: Path | None = None
    #: dataset name -> :class:`DatasetTables` (``run_all(datasets=...)``, ``--dataset``)
    datasets: dict = field(default_factory=dict)

    @property
    def tables(self) -> dict:
        """Every table written under :attr:`out` and held in memory, by file name without ``.csv``
        (the per-voxel tables are in :attr:`streamed_tables`)."""
        extra = {"dimensionality": self.dimensionality} if self.dimensionality is not None else {}
        for tabs in (self.consistency, self.seeds, *self.datasets.values()):
            if tabs is not None:
                extra.update(tabs.named())
        return {**_named(self.regression), **_named(self.components), **_named(self.rsa),
                **_named(self.voxels), **extra}

    @property
    def streamed_tables(self) -> dict:
        """Tables written one model version at a time and not held in memory (file name without
        ``.csv`` -> path): ``voxel-best-layer_<t>``."""
        return {f"voxel-best-layer_{t}": v.best_layer_path for t, v in self.voxels.items()}

    @property
    def targets(self) -> list:
        return list(dict.fromkeys([*self.regression, *self.components]))

    def counts(self) -> dict:
        """Regression units by status: ``{"done": .., "recomputed": .., "skipped": ..}``."""
        st = self.regression_units["status"] if len(self.regression_units) else pd.Series([], dtype=object)
        return {s: int((st == s).sum()) for s in ("done", "recomputed", "skipped")}

    # dict-style access by file name, as the dict returned before fastenc 0.2
    def __getitem__(self, key):
        if key == "regression_units":
            return self.regression_units
        extra = {}
        for t, r in self.regression.items():
            extra[f"best-layer-roi-subjects_{t}"] = r.best_layer_roi_subjects
        for t, r in self.rsa.items():
            extra.update({f"rsa_best-layer-roi-subjects_{t}": r.best_layer_roi_subjects,
                          f"rsa_roi-matrices_{t}": r.roi_matrices, f"rsa_category-order_{t}": r.category_order,
                          f"rsa_roi-vs-roi-n_{t}": r.roi_vs_roi_n})
        table = self.tables.get(key, extra.get(key))
        if table is None:
            raise KeyError(key)
        return table

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key) -> bool:
        return self.get(key) is not None

    def keys(self) -> list:
        return ["regression_units", *self.tables]


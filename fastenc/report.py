"""One self-contained HTML page of a run's results: ``<out>/report.html``.

The page is read top to bottom: the headline table, each figure group with a one-line caption
saying what to look for, the statistics tables, the published values for orientation, and the
provenance of the run. Figures are embedded as PNG data, styles are inline and nothing is
fetched from the network, so the file can be mailed or archived as it is. It is built only from
what the run wrote under ``out`` (CSV tables and ``figures/*.png``), so it can be rebuilt at
any time with :func:`write_report`.

Examples
--------
>>> import tempfile, pandas as pd
>>> from pathlib import Path
>>> out = Path(tempfile.mkdtemp())
>>> pd.DataFrame({"source_model": ["A"], "randnetw": [False], "median_r2_test_c_mean": [0.5],
...               "median_r2_test_c_yerr": [0.01]}).to_csv(out / "across-models_NH2015.csv", index=False)
>>> page = write_report(out, provenance={"fastenc version": "0.1.0"})
>>> page.name, "0.500" in page.read_text()
('report.html', True)
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from .constants import PUBLISHED_SCORES

__all__ = ["write_report", "FIGURE_GROUPS"]

#: Figure groups of the page, in reading order: (file-name prefix, heading, what to look for).
FIGURE_GROUPS = (
    ("across-models", "Across models (best layer on independent splits)",
     "Trained networks above the SpectroTemporal band, permuted networks below it."),
    ("across-layers-roi", "Across layers, per anatomical ROI",
     "Primary voxels peak at earlier layers than the non-primary ROIs."),
    ("across-layers", "Across layers",
     "Where each model's layers predict best: the peak is the model stage that matches cortex."),
    ("best-layer-roi", "Best layer per anatomical ROI (regression)",
     "Points above the diagonal: a non-primary ROI prefers a later layer than Primary."),
    ("components", "Components (NH2015comp)",
     "Which model predicts each response component; speech and music need trained networks."),
    ("component-predictions", "Components: predicted vs measured responses (Fig. 4)",
     "Each sound's component response against the model's prediction at the component's best "
     "layer: points along the diagonal, with the speech and music sounds set apart only by trained networks."),
    ("rsa_across-models", "RSA across models",
     "Model–brain similarity against the noise ceiling (dashed line and band)."),
    ("rsa_per-roi", "RSA per anatomical ROI",
     "Each ROI against its own ceiling; the ceiling is a lower bound (see docs/outputs.md)."),
    ("rsa_best-layer-roi", "Best layer per anatomical ROI (RSA)",
     "The RSA analogue of the regression's ROI scatter: does it agree?"),
    ("rsa_roi-matrices", "Human similarity matrices per ROI",
     "Category structure (blocks along the diagonal) and how similar ROIs are to each other."),
    ("voxel", "Voxel maps", "The best layer of each voxel on the flattened cortex: early "
     "layers in primary auditory cortex, later layers around it."),
    ("dimensionality", "Effective dimensionality", "Whether higher-dimensional layers predict better."),
    ("consistency", "Consistency", "Whether the ranking of models holds across datasets and methods."),
    ("seed", "Seeds", "Models trained with two seeds should score alike."),
    ("clean-vs-noisy", "Trained on clean vs noisy speech",
     "Whether training on speech in noise helps to predict auditory cortex (Fig. 8)."),
    ("dataset-", "Your datasets (manifests)",
     "Each dataset's models: the best layer on independent splits, and where along each model the "
     "responses are predicted best (per ROI when the targets have one); regression only, no RSA."),
)

_STAT_TABLES = (
    ("model-comparisons", "Model comparisons"),
    ("best-layer-roi-wilcoxon", "ROI best-layer tests (regression)"),
    ("rsa_best-layer-roi-wilcoxon", "ROI best-layer tests (RSA)"),
)

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#1a202c;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #cbd5e0}
h3{font-size:1.05em;margin-bottom:.3em}p.caption{color:#4a5568;margin:.2em 0 .6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1.2em}th,td{border:1px solid #cbd5e0;
padding:.25em .5em;text-align:right}th{background:#edf2f7}td:first-child,th:first-child{text-align:left}
img{max-width:100%;height:auto;border:1px solid #e2e8f0;margin:.3em 0 1em}
.note{background:#fffbea;border-left:4px solid #ecc94b;padding:.5em 1em}
.published{color:#744210}
"""

# Marks, on <body>, how many embedded images decoded: for a person nothing visible, for the tests
# a check that runs in a real browser.
_CHECK_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images', String(imgs.length));
  document.body.setAttribute('data-images-decoded', String(ok));
});
"""


def _table(df: pd.DataFrame, floatfmt="{:.3f}") -> str:
    return df.to_html(index=False, border=0, na_rep="–", float_format=lambda v: floatfmt.format(v),
                      escape=True)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    alt = html.escape(path.stem)
    return f'<img alt="{alt}" src="data:image/png;base64,{data}">'


def _target_of(name: str) -> str:
    m = re.search(r"_(NH2015comp|NH2015|B2021)$", name)
    return m.group(1) if m else ""


def _headline(out: Path) -> str:
    parts = []
    for csv in sorted(out.glob("across-models_*.csv")):
        target = _target_of(csv.stem)
        df = pd.read_csv(csv)
        if "median_r2_test_c_mean" in df:
            cols = [c for c in ("display_name", "source_model", "randnetw", "median_r2_test_c_mean",
                                "median_r2_test_c_yerr", "n_subjects") if c in df]
            df = df[cols].sort_values(["randnetw", "median_r2_test_c_mean"], ascending=[True, False])
            what = "median noise-corrected R² (mean over participants ± within-subject SEM)"
        elif "median_r2_test_mean" in df:
            df = df.pivot_table(index=["source_model", "randnetw"], columns="component",
                                values="median_r2_test_mean").reset_index()
            df.columns.name = None
            what = "median R² per component (not noise-corrected)"
        else:
            continue
        parts.append(f"<h3>{html.escape(target)}: {what}</h3>{_table(df)}")
    for csv in sorted(out.glob("dataset-*_across-models.csv")):
        df = pd.read_csv(csv)
        name = csv.stem[len("dataset-"):-len("_across-models")]
        cols = [c for c in ("display_name", "randnetw", "roi", "score_mean", "score_sem", "n_units", "unit",
                            "best_layer") if c in df]
        metric = str(df["metric"].iloc[0]) if "metric" in df and len(df) else "score"
        parts.append(f"<h3>dataset {html.escape(name)}: median {html.escape(metric)} at the best layer "
                     f"(mean over the `unit` column’s units ± within-unit SEM across models; docs/outputs.md)</h3>{_table(df[cols])}")
    if not parts:
        return "<p>No across-model table was written.</p>"
    return "\n".join(parts)


def _figures(fig_dir: Path) -> tuple[str, list[str]]:
    pngs = sorted(fig_dir.glob("*.png")) if fig_dir.is_dir() else []
    used, parts = set(), []
    for prefix, heading, caption in FIGURE_GROUPS:
        group = [p for p in pngs if p not in used and p.stem.startswith(prefix)]
        if not group:
            continue
        used.update(group)
        imgs = "\n".join(f"<h3>{html.escape(p.stem)}</h3>{_img(p)}" for p in group)
        parts.append(f"<h2>{html.escape(heading)}</h2><p class=caption>{html.escape(caption)}</p>{imgs}")
    rest = [p for p in pngs if p not in used]
    if rest:
        imgs = "\n".join(f"<h3>{html.escape(p.stem)}</h3>{_img(p)}" for p in rest)
        parts.append(f"<h2>Other figures</h2>{imgs}")
    return "\n".join(parts), [p.name for p in pngs]


def _stats(out: Path) -> str:
    parts = []
    for prefix, heading in _STAT_TABLES:
        for csv in sorted(out.glob(f"{prefix}_*.csv")):
            df = pd.read_csv(csv)
            df = df[[c for c in df.columns if c not in ("pooled_models", "model_set", "test")]]
            parts.append(f"<h3>{html.escape(heading)}: {html.escape(_target_of(csv.stem))}</h3>"
                         f"<p class=caption>From <code>{html.escape(csv.name)}</code>; p values from N "
                         "resamples are (k + 1)/(N + 1), the study's raw fraction beside them.</p>"
                         f"{_table(df, '{:.4g}')}")
    return "\n".join(parts) or "<p>No statistics tables were written.</p>"


def _published() -> str:
    rows = [{"model": m, "NH2015": nh, "B2021": b} for m, (nh, b) in PUBLISHED_SCORES.items()]
    return ("<p class='caption published'>Published values (Tuckute et al. 2023, read from the "
            "paper's figures, ± 0.005), for orientation only: they are not computed by this run.</p>"
            + _table(pd.DataFrame(rows)))


def write_report(out, provenance: Mapping[str, object] | None = None, skipped: Sequence[str] | None = None,
                 title: str = "fastenc results", path=None) -> Path:
    """Write ``<out>/report.html`` (or ``path``) from the tables and figures under ``out``.

    Parameters
    ----------
    out : path
        A run's output folder (``run-all --out``).
    provenance : mapping, optional
        Shown as a table at the end: fastenc version, command line, data root and fingerprint,
        registry, seeds, run time, ...
    skipped : sequence of str, optional
        Figures (or analyses) not drawn, each with why; also read from
        ``<out>/figures/SKIPPED.txt`` when that file exists.

    Returns
    -------
    Path of the page.
    """
    out = Path(out)
    path = Path(path) if path is not None else out / "report.html"
    fig_html, fig_names = _figures(out / "figures")
    skipped = list(skipped or [])
    skip_file = out / "figures" / "SKIPPED.txt"
    if skip_file.is_file():
        # "figure: why" lines (the file's header line has no ": ")
        skipped += [ln.strip() for ln in skip_file.read_text().splitlines() if ": " in ln]
    skip_html = ("<div class=note><b>Not drawn</b> (the models they need are not present):<ul>"
                 + "".join(f"<li>{html.escape(s)}</li>" for s in dict.fromkeys(skipped)) + "</ul></div>"
                 if skipped else "")
    prov = pd.DataFrame([{"item": k, "value": str(v)} for k, v in (provenance or {}).items()])
    body = f"""
<h1>{html.escape(title)}</h1>
<p class=caption>Voxelwise ridge regression with exact leave-one-out alpha, Spearman–Brown noise
correction, best layer on independent splits and RSA, as in Tuckute et al. (2023). Every file
and column is described in fastenc's docs/outputs.md; the method in docs/method.md.</p>
<h2>Headline</h2>
{_headline(out)}
{skip_html}
{fig_html}
<h2>Statistics</h2>
{_stats(out)}
<h2>Published values</h2>
{_published()}
<h2>Provenance</h2>
{_table(prov) if len(prov) else "<p>not recorded</p>"}
<p class=caption>{len(fig_names)} figure(s) embedded.</p>
"""
    page = (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
            f"<script>{_CHECK_SCRIPT}</script></head><body>{body}</body></html>\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path

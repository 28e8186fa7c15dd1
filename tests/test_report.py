"""report.html: self-contained, built from the run's files, and sound in a real browser."""
import base64
import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from fastenc import figures
from fastenc.report import write_report


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    pd.DataFrame({"source_model": ["A", "spectemp", "A"], "randnetw": [False, False, True],
                  "display_name": ["Net A", "SpectroTemporal", "Net A"],
                  "median_r2_test_c_mean": [0.6123, 0.3011, 0.0712], "median_r2_test_c_yerr": [0.01, 0.02, 0.005],
                  "n_subjects": [8, 8, 8]}).to_csv(out / "across-models_NH2015.csv", index=False)
    pd.DataFrame({"comparison": ["trained vs permuted"], "model_1": ["A"], "model_2": ["A"],
                  "p_value": [1 / 10001], "p_value_study": [0.0], "n_resamples": [10000]}
                 ).to_csv(out / "model-comparisons_NH2015.csv", index=False)
    scores = pd.DataFrame({"lowfreq": [0.9, 0.2], "speech": [0.3, 0.6]}, index=["A", "B"])
    figures.plot_components(scores, spectemp=None, path=out / "figures" / "components_NH2015comp")
    curves = pd.DataFrame({"x": np.arange(3)})
    fig = figures._new_figure((3, 2))
    fig.add_subplot().plot(curves["x"], curves["x"] ** 2)
    figures.save_figure(fig, out / "figures" / "across-layers_NH2015")
    (out / "figures" / "SKIPPED.txt").write_text("seed pairs: no FIG2_SEED_PAIRS model present\n")
    page = write_report(out, provenance={"fastenc version": "9.9.9", "command": "python cli.py run-all"})
    return out, page


def test_page_content(out):
    out, page = out
    text = page.read_text()
    assert "0.612" in text and "0.301" in text and "0.071" in text        # the headline table
    assert "9.9.9" in text and "python cli.py run-all" in text                # provenance
    assert "seed pairs: no FIG2_SEED_PAIRS model present" in text           # skipped figures listed
    assert "9.999e-05" in text and "10000" in text                          # a statistics table
    assert "published" in text.lower() and "0.731" in text                  # published values, marked
    # self-contained: every image embedded, nothing fetched
    srcs = re.findall(r'<img[^>]*src="([^"]+)"', text)
    assert len(srcs) == len(list((out / "figures").glob("*.png"))) == 2
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(src|href)="(https?:)?//', text)
    # the captions say what to look for, in reading order
    assert text.index("Across layers") < text.index("Components (NH2015comp)")


def _browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("FASTENC_REQUIRE_BROWSER"):
        pytest.fail("no headless Chromium found (install Debian's chromium)")
    pytest.skip("no headless Chromium found (install Debian's chromium)")


def test_page_in_headless_chromium(out, tmp_path):
    out, page = out
    exe = _browser()
    url = page.resolve().as_uri()
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(args + ["--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
                                 "--dump-dom", url], capture_output=True, text=True, timeout=120)
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, dom.stderr[-2000:]
    n = re.search(r'data-images="(\d+)"', body.group(1))
    ok = re.search(r'data-images-decoded="(\d+)"', body.group(1))
    assert n and ok and int(n.group(1)) == int(ok.group(1)) == 2          # every image decodes
    console = [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln and "report.html" in ln]
    assert console == []                                                   # no console errors
    shot = tmp_path / "shot.png"
    subprocess.run(args + ["--hide-scrollbars", "--window-size=1200,1600", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

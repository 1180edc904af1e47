"""The drift report: one self-contained HTML page (no scripts, no external files) that shows the verdict
and where the tested images sit against the training split in the projection."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from cxr.safety.drift import DriftReference, DriftVerdict

SHOWN = 4  # components drawn: those whose mean moved most


def _figure(reference: np.ndarray, current: np.ndarray, order: np.ndarray) -> str:
    matplotlib.use("Agg")
    shown = order[:SHOWN]
    fig, axes = plt.subplots(1, len(shown) + 1, figsize=(3.2 * (len(shown) + 1), 3.0))
    a, b = (int(order[0]), int(order[1])) if len(order) > 1 else (0, 0)
    axes[0].scatter(reference[:, a], reference[:, b], s=6, alpha=0.4, label="training")
    axes[0].scatter(current[:, a], current[:, b], s=6, alpha=0.6, label="tested")
    axes[0].set_xlabel(f"component {a + 1}")
    axes[0].set_ylabel(f"component {b + 1}")
    axes[0].legend(fontsize=7)
    for ax, c in zip(axes[1:], shown, strict=True):
        bins = np.histogram_bin_edges(np.r_[reference[:, c], current[:, c]], bins=24)
        ax.hist(reference[:, c], bins=bins, density=True, alpha=0.5, label="training")
        ax.hist(current[:, c], bins=bins, density=True, alpha=0.5, label="tested")
        ax.set_xlabel(f"component {c + 1}")
        ax.set_yticks([])
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def shift_table(reference: np.ndarray, current: np.ndarray) -> list[dict]:
    """Per component: the tested images' mean minus the training mean, in training standard deviations, and
    the ratio of their spreads (descriptive, for reading the report; the verdict is the joint test's)."""
    sd = np.where(reference.std(axis=0) > 1e-12, reference.std(axis=0), 1.0)
    shift = (current.mean(axis=0) - reference.mean(axis=0)) / sd
    spread = current.std(axis=0) / sd
    return [
        {"component": i + 1, "mean_shift_sd": round(float(s), 3), "spread_ratio": round(float(r), 3)}
        for i, (s, r) in enumerate(zip(shift, spread, strict=True))
    ]


def write_report(
    verdict: DriftVerdict, reference: DriftReference, current: np.ndarray, path: Path, source: str
) -> Path:
    current = np.asarray(current, np.float64)
    table = shift_table(reference.reference, current)
    order = np.argsort([-abs(row["mean_shift_sd"]) for row in table])
    image = _figure(reference.reference, current, order)
    rows = "".join(
        f"<tr><td>{r['component']}</td><td>{r['mean_shift_sd']:+.2f}</td><td>{r['spread_ratio']:.2f}</td></tr>"
        for r in (table[i] for i in order)
    )
    colour = "#b00020" if verdict.drift else "#1b5e20"
    meta = reference.meta
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Drift report</title>
<style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto;color:#222}}
td,th{{padding:.2rem .8rem;text-align:right}}th{{border-bottom:1px solid #999}}
.verdict{{color:{colour};font-size:1.3rem;font-weight:bold}}</style></head><body>
<h1>Drift report</h1>
<p class="verdict">{html.escape(verdict.line())}</p>
<p>Tested: {html.escape(source)}.</p>
<table>
<tr><th>images tested</th><td>{verdict.n}</td></tr>
<tr><th>training images (reference)</th><td>{verdict.n_reference}</td></tr>
<tr><th>test</th><td>{html.escape(verdict.method)}</td></tr>
<tr><th>energy statistic</th><td>{verdict.statistic:.5f}</td></tr>
<tr><th>p-value</th><td>{verdict.p_value:.3g}</td></tr>
<tr><th>alpha</th><td>{verdict.alpha:g}</td></tr>
<tr><th>representation</th><td>{html.escape(str(meta.get("representation", "")))}: {verdict.components}
components, {100 * float(meta.get("explained_variance", 0)):.0f}% of the training variance</td></tr>
</table>
<h2>Where the tested images sit</h2>
<img alt="training and tested images in the projection" src="data:image/png;base64,{image}" style="max-width:100%">
<h2>Per component (descriptive)</h2>
<p>Mean shift in training standard deviations and the ratio of spreads, largest shift first.
The verdict is the joint test's, not these.</p>
<table><tr><th>component</th><th>mean shift (SD)</th><th>spread ratio</th></tr>{rows}</table>
<h2>What to do</h2>
<p>{
        "Drift: the images differ from those the model was trained on. Find out why (a new site, scanner or "
        "population). Retrain with data from it, or keep that source away from the model, before trusting "
        "its predictions there. See docs/operations.md."
        if verdict.drift
        else "No drift was detected at this alpha for this many images: the images are consistent with the "
        "training population in this representation. That is not a proof of equivalence."
    }</p>
</body></html>
"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path

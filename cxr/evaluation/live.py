"""Sensitivity, specificity, PPV and NPV in use: the model's answers against the findings radiologists
recorded (`cxr.serving.records`), per model version, with Wilson 95% intervals.

Only predictions with a finding of covid or not_covid count; unsure findings and refused uploads are
counted apart. PPV and NPV here are at the prevalence of the recorded cases, not a stated one.
"""

from __future__ import annotations

from collections import defaultdict

from scipy.stats import binomtest

MEASURES = {  # name: (numerator cell, denominator cells)
    "sensitivity": ("tp", ("tp", "fn")),
    "specificity": ("tn", ("tn", "fp")),
    "ppv": ("tp", ("tp", "fp")),
    "npv": ("tn", ("tn", "fn")),
}


def proportion(k: int, n: int) -> dict:
    """k of n as {value, ci95 (Wilson), n}."""
    if n == 0:
        return {"value": None, "ci95": [None, None], "n": 0}
    interval = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return {"value": k / n, "ci95": [float(interval.low), float(interval.high)], "n": n}


def performance_by_version(rows: list[dict]) -> dict[str, dict]:
    """version -> counts (tp, fp, tn, fn, unsure, refused, no_finding) and the four measures."""
    counts: dict[str, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(("tp", "fp", "tn", "fn", "unsure", "refused", "no_finding"), 0)
    )
    for row in rows:
        c = counts[row["model_version"]]
        if row["positive"] is None:
            c["refused"] += 1
        elif row["finding"] is None:
            c["no_finding"] += 1
        elif row["finding"] == "unsure":
            c["unsure"] += 1
        else:
            actual = row["finding"] == "covid"
            c[("t" if row["positive"] == actual else "f") + ("p" if row["positive"] else "n")] += 1
    out = {}
    for version, c in sorted(counts.items()):
        out[version] = {
            "counts": c,
            **{name: proportion(c[k], sum(c[d] for d in den)) for name, (k, den) in MEASURES.items()},
        }
    return out


def measure_text(m: dict) -> str:
    """One measure as `0.91 [0.80, 0.96]` ('-' without cases)."""
    return "-" if m["value"] is None else f"{m['value']:.2f} [{m['ci95'][0]:.2f}, {m['ci95'][1]:.2f}]"


def format_performance(result: dict[str, dict]) -> str:
    if not result:
        return "no predictions on record"
    lines = []
    for version, r in result.items():
        c = r["counts"]
        judged = c["tp"] + c["fp"] + c["tn"] + c["fn"]
        lines.append(
            f"version {version}: {judged} predictions with a finding ({c['unsure']} unsure, {c['no_finding']} "
            f"without one, {c['refused']} refused)"
        )
        for name in MEASURES:
            m = r[name]
            lines.append(f"  {name:<12} {measure_text(m)}  (n={m['n']})")
    return "\n".join(lines)

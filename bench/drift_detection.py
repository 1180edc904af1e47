"""Does `cxr monitor drift` flag a population the model was not trained for, and leave its own alone?

The model is a registered version (default: the CPU-profile model of `make run`, @challenger); its drift
reference is its own training split. Two populations it never saw, from ../shared/data:
- children: the pediatric-normal sample's images that are not bundled with the scope check (100);
- adults: images of covid-radiography-more, the same database as the training data (default 100 per class).
For each batch size, `--draws` random batches of each population are tested exactly as the CLI tests
them (cxr.safety.drift.detect, monitor.drift_alpha): the share of batches flagged is the detection rate
for children and the false-alarm rate for adults. Last line: ratio = children's detection rate at the
smallest batch size / adults' false-alarm rate there (the false-alarm rate floored at 1/draws).

    .venv/bin/python bench/drift_detection.py [--model models:/covid-xray-vgg16@challenger] [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models:/covid-xray-vgg16@challenger")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--adults-per-class", type=int, default=50)
    parser.add_argument("--sizes", default="30,50,100")
    parser.add_argument("--draws", type=int, default=20)
    args = parser.parse_args()

    from cxr.params import load_params
    from cxr.safety.drift import detect
    from cxr.safety.population import REFERENCE_DIR
    from cxr.steps.drift_check import project_files
    from cxr.tracking import runs as tracking

    params = load_params()
    tracking.configure(tracking.resolve_tracking_uri(params), params.mlflow.experiment)
    bundled = {p.name for p in REFERENCE_DIR.iterdir()}
    children = [p for p in sorted((args.shared / "pediatric-normal-sample").iterdir()) if p.name not in bundled]
    rng = np.random.default_rng(0)
    adults = []
    for folder in sorted(p for p in (args.shared / "covid-radiography-more").iterdir() if p.is_dir()):
        files = sorted(folder.rglob("*.png"))
        adults += [files[i] for i in rng.choice(len(files), args.adults_per_class, replace=False)]
    started = time.perf_counter()
    kids, reference = project_files(args.model, children)
    grown, _ = project_files(args.model, adults)
    print(f"{len(children)} children, {len(adults)} adults projected in {time.perf_counter() - started:.0f} s")
    print(f"reference: {reference.reference.shape[0]} training images, {reference.reference.shape[1]} components")
    alpha, sizes, rates = params.monitor.drift_alpha, [int(s) for s in args.sizes.split(",")], {}
    print(f"{'batch':>6} {'children flagged':>17} {'adults flagged':>15}  (alpha {alpha:g}, {args.draws} draws)")
    for size in sizes:
        flagged = {}
        for label, rows in (("children", kids), ("adults", grown)):
            n = min(size, len(rows))
            draws = [rows[rng.choice(len(rows), n, replace=False)] for _ in range(args.draws)]
            flagged[label] = float(np.mean([detect(reference, d, alpha, min_n=1).drift for d in draws]))
        rates[size] = flagged
        print(f"{size:>6} {flagged['children']:>17.2f} {flagged['adults']:>15.2f}")
    whole = {label: detect(reference, rows, alpha, min_n=1) for label, rows in (("children", kids), ("adults", grown))}
    for label, verdict in whole.items():
        print(f"all {label}: {verdict.line()}")
    smallest = rates[sizes[0]]
    print(f"ratio: {smallest['children'] / max(smallest['adults'], 1 / args.draws):.2f}")


if __name__ == "__main__":
    main()

"""The decision threshold, chosen on held-out images, and how it was chosen."""

from __future__ import annotations

import numpy as np

from cxr.evaluation.metrics import compute_metrics


def choose_threshold(
    y_true, probability, strategy: str = "max_f1", target_sensitivity: float = 0.95, fixed: float = 0.5
) -> float:
    """The decision threshold, chosen on validation data.

    Candidates are the midpoints between consecutive distinct probabilities (so rounding never flips a
    validation prediction). max_f1: the candidate with the highest F1, ties to the one closest to 0.5;
    target_sensitivity: the highest candidate whose sensitivity reaches the target; fixed: `fixed`.
    """
    y_true = np.asarray(y_true).astype(int)
    probability = np.asarray(probability, dtype=np.float64)
    if strategy == "fixed" or len(set(y_true)) < 2:
        return float(fixed)
    distinct = np.unique(np.concatenate([[0.0], probability, [1.0]]))
    candidates = np.unique(np.concatenate([(distinct[:-1] + distinct[1:]) / 2, [fixed]]))
    if strategy == "max_f1":
        scores = [(compute_metrics(y_true, probability, t)["f1"], -abs(t - 0.5), t) for t in candidates]
        return float(max(scores)[2])
    if strategy == "target_sensitivity":
        reaching = [t for t in candidates if compute_metrics(y_true, probability, t)["recall"] >= target_sensitivity]
        return float(max(reaching)) if reaching else float(candidates.min())
    raise ValueError(f"evaluate.threshold_strategy '{strategy}' is not one of fixed, max_f1, target_sensitivity")


def decide_threshold(
    y_true,
    probability,
    strategy: str = "max_f1",
    target_sensitivity: float = 0.95,
    fixed: float = 0.5,
    min_per_class: int = 10,
    prior_images: float = 20.0,
    images: str = "validation",
) -> tuple[float, str]:
    """The decision threshold and a sentence saying how it was chosen.

    A threshold tuned on a handful of images lands wherever those images happen to fall, often at an
    extreme. Below `min_per_class` images of either class the fixed threshold is kept. Above it, a
    max_f1 threshold is shrunk toward `fixed` (0.5) with weight n / (n + prior_images), as if
    `prior_images` images had voted for 0.5; a target_sensitivity threshold is kept as chosen (shrinking
    it would break the sensitivity it was chosen for).
    """
    y_true = np.asarray(y_true).astype(int)
    n, fewest = len(y_true), int(min((y_true == 1).sum(), (y_true == 0).sum())) if len(y_true) else 0
    if strategy == "fixed":
        return float(fixed), f"fixed at {fixed:g} (evaluate.threshold_strategy: fixed)"
    if fewest < min_per_class:
        return float(fixed), (
            f"fixed at {fixed:g}: the {images} images hold {fewest} of their smaller class, fewer than "
            f"evaluate.threshold_min_per_class {min_per_class}, too few to tune a threshold on"
        )
    raw = choose_threshold(y_true, probability, strategy, target_sensitivity, fixed)
    if strategy == "target_sensitivity":
        return raw, f"{raw:.4f}: the highest reaching sensitivity {target_sensitivity:g} on {n} {images} images"
    weight = n / (n + prior_images)
    chosen = float(fixed + weight * (raw - fixed))
    return chosen, (
        f"{chosen:.4f}: {strategy} on {n} {images} images gave {raw:.4f}, shrunk toward {fixed:g} "
        f"with weight {weight:.2f} (evaluate.threshold_prior_images {prior_images:g})"
    )

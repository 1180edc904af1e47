"""The per-image shift warning: between the input gate's shift threshold and its refusal threshold a film is
answered, with `shift: true` and a warning that states the false-alarm rate."""

import numpy as np

from cxr.inference.scoring import decide
from cxr.model.config import ModelConfig
from cxr.safety.input_gate import InputGate, fit_gate


class Scored:
    """What `decide` reads of a classifier: its gate, scope check and config."""

    def __init__(self, gate: InputGate):
        self.gate, self.scope = gate, None
        self.config = ModelConfig(image_size=32, positive_class="COVID", negative_class="Normal", threshold=0.5)

    def label_for(self, probability: float) -> str:
        return self.config.label_for(probability)


def test_a_film_past_the_shift_threshold_is_answered_with_a_warning():
    rng = np.random.default_rng(0)
    gate = fit_gate(rng.normal(size=(400, 8)), rng.normal(size=(100, 8)), 0.99, 4, 8, 0, shift_quantile=0.95)
    assert gate.shift_threshold < gate.threshold
    typical, unfamiliar, refused = (
        0.5 * gate.shift_threshold,
        (gate.shift_threshold + gate.threshold) / 2,
        2 * gate.threshold,
    )
    rows = [{"file": name} for name in ("typical", "unfamiliar", "refused")]
    outputs = (np.array([0.8, 0.8, 0.8]), np.array([typical, unfamiliar, refused]), np.zeros(3), np.zeros((3, 0)))
    typical_row, unfamiliar_row, refused_row = decide(Scored(gate), rows, [0, 1, 2], outputs)
    assert typical_row["shift"] is False and "warning" not in typical_row and typical_row["label"] == "COVID"
    assert unfamiliar_row["shift"] is True and unfamiliar_row["label"] == "COVID"
    assert (
        "unlike the films the model was trained on" in unfamiliar_row["warning"]
        and "5% of held-out" in unfamiliar_row["warning"]
    )
    assert refused_row["label"] is None and "shift" not in refused_row


def test_a_gate_saved_without_a_shift_quantile_never_warns(tmp_path):
    rng = np.random.default_rng(1)
    gate = fit_gate(rng.normal(size=(200, 4)), rng.normal(size=(50, 4)), 0.99, 4, 4, 0)
    gate.save(tmp_path)
    again = InputGate.load(tmp_path / "ood.npz")
    assert again.shift_threshold == np.inf and not again.shifted(np.array([1e9])).any()
    shifted = fit_gate(rng.normal(size=(200, 4)), rng.normal(size=(50, 4)), 0.99, 4, 4, 0, shift_quantile=0.9)
    shifted.save(tmp_path)
    assert InputGate.load(tmp_path / "ood.npz").shift_threshold == shifted.shift_threshold

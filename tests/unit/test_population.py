import numpy as np

from cxr.evaluation.shortcut import masked, verdict
from cxr.safety.population import ScopeCheck, fit_scope, reference_images


def test_the_scope_check_refuses_the_reference_population_and_reloads_identically(tmp_path):
    rng = np.random.default_rng(0)
    adults, children = rng.normal(0, 1, (120, 20)), rng.normal(1.5, 1, (60, 20))
    check = fit_scope(adults, children, accept_quantile=0.98, c=0.1, folds=5, seed=0)
    assert check.meta["reference_refuse_rate"] >= 0.9 and check.meta["adult_accept_rate_cross_fitted"] >= 0.95
    new_adults, new_children = rng.normal(0, 1, (200, 20)), rng.normal(1.5, 1, (200, 20))
    assert check.accepts(check.score(new_adults)).mean() >= 0.9
    assert (~check.accepts(check.score(new_children))).mean() >= 0.9
    again = ScopeCheck.load(check.save(tmp_path))
    assert np.allclose(again.score(new_children), check.score(new_children)) and again.threshold == check.threshold
    assert "this model is for adults only" in check.refusal(0.99)


def test_the_bundled_reference_children_ship_with_the_package():
    assert len(reference_images()) == 100


def test_the_shortcut_probe_hides_the_lungs_or_everything_else():
    image = np.arange(100 * 100, dtype=np.uint32).reshape(100, 100).astype(np.uint8)
    hidden, only = masked(image, "lungs_hidden"), masked(image, "lungs_only")
    fill = np.uint8(round(float(image.mean())))
    assert np.all(hidden[15:85, 15:85] == fill) and np.array_equal(hidden[:15], image[:15])
    assert np.all(only[:15] == fill) and np.array_equal(only[15:85, 15:85], image[15:85, 15:85])
    assert "reads cues outside the lungs" in verdict(0.95, 0.8, 0.9)
    assert "relies mostly on the lung fields" in verdict(0.95, 0.55, 0.9)

"""Notebook 00 (paper notes + toy model of superposition): smoke run loosely, committed full run against the issue's targets."""
import math

import pytest

from glassbox import findings

STEM = "00_paper_notes"
KEYS = ["tms_features_represented_dense", "tms_features_represented_sparse", "tms_pentagon_max_angle_error_deg",
        "tms_phase_diagram_agreement", "tms_sticky_share", "tms_sticky_share_uniform_baseline",
        "tms_dims_per_feature_plateaus", "tms_train_seconds", "headline"]


@pytest.mark.notebook
def test_smoke(smoke_run):
    f = smoke_run(STEM)
    missing = [k for k in KEYS if k not in f]
    assert not missing, f"smoke run did not record {missing}"
    assert 0 <= f["tms_features_represented_dense"] <= 20 and 0 <= f["tms_features_represented_sparse"] <= 20, \
        "a 20-feature model cannot represent fewer than 0 or more than 20 features"
    assert 0 <= f["tms_pentagon_max_angle_error_deg"] <= 288, "neighbouring angles of 5 directions lie in [0, 360]"
    assert 0 <= f["tms_phase_diagram_agreement"] <= 1 and 0 <= f["tms_sticky_share"] <= 1
    assert 0.4 < f["tms_sticky_share_uniform_baseline"] < 0.55, "the uniform baseline does not depend on training"
    assert set(f["tms_dims_per_feature_plateaus"]) == {"1", "1/2"}
    assert 0 < f["tms_train_seconds"] < 20, f"smoke training took {f['tms_train_seconds']} s; smoke must stay tiny"
    assert "pentagon" in f["headline"]


def test_full_findings():
    f = findings.load(STEM)
    assert f["tms_features_represented_dense"] == 5, \
        "dense features: the 20 -> 5 model should keep exactly the 5 most important (PCA-like); undertrained?"
    assert f["tms_features_represented_sparse"] >= 10, \
        f"at S = 0.999 far more than 5 features should be represented, got {f['tms_features_represented_sparse']}"
    assert f["tms_pentagon_max_angle_error_deg"] < 1.0, \
        f"5 sparse features in 2 dims should form a regular pentagon; worst angle is off by {f['tms_pentagon_max_angle_error_deg']} deg"
    assert f["tms_phase_diagram_agreement"] >= 0.9, \
        f"trained phases should match the closed-form theory in >= 90% of cells, got {f['tms_phase_diagram_agreement']}"
    assert f["tms_sticky_share"] >= f["tms_sticky_share_uniform_baseline"] + 0.3, \
        "feature dimensionalities should pile up at the sticky fractions, well above a uniform spread"
    assert f["tms_dims_per_feature_plateaus"]["1"] >= 1 and f["tms_dims_per_feature_plateaus"]["1/2"] >= 2, \
        f"D* should sit at 1 (dense) and on a plateau at 1/2; got {f['tms_dims_per_feature_plateaus']}"
    assert 0 < f["tms_train_seconds"] < 150, f"training took {f['tms_train_seconds']} s; the whole notebook must run in < 3 min"
    assert f"{f['tms_phase_diagram_agreement']:.0%}" in f["headline"], "the headline should quote the recorded agreement"
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in f.values())

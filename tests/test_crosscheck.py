"""The committed result of `make crosscheck` (notebook 10's attribution graph against circuit-tracer, run in its own
virtual environment by tests/crosscheck/): well-formed, passed, and made from the checkpoints now committed."""
import hashlib
import json
import math

import pytest

from glassbox import findings
from glassbox.journal import paths

# next to the script that writes it, not in checkpoints/: the journal's record check (runner.record_problems) admits
# there only files that a notebook promoted
RESULT = paths.ROOT / "tests" / "crosscheck" / "circuit_tracer.json"
TOLERANCE = 1e-4  # the largest |edge difference| we accept, like for like (edges are O(1))


@pytest.fixture(scope="module")
def result() -> dict:
    if not RESULT.is_file():
        pytest.skip("no tests/crosscheck/circuit_tracer.json: run `make crosscheck`")
    return json.loads(RESULT.read_text())


def test_crosscheck_result_is_well_formed_and_passed(result):
    for key in ("passed", "tolerance_abs", "prompt", "target", "model_conversion", "features", "like_for_like", "by_block",
                "embedding_edges_as_recorded", "position_0_left_out_by_circuit_tracer", "pruning_on_our_adjacency",
                "checkpoint_sha256", "versions"):
        assert key in result, f"crosscheck result lacks {key!r}: rerun make crosscheck"
    assert result["passed"] is True
    assert result["tolerance_abs"] <= TOLERANCE
    like = result["like_for_like"]
    assert like["n_edges"] > 1_000_000 and like["n_nonzero"] > 100_000
    assert like["max_abs_diff"] < TOLERANCE and like["correlation"] > 0.999999
    for name, block in result["by_block"].items():
        assert block["n_edges"] > 0 and block["max_abs_diff"] < TOLERANCE, name
    assert result["model_conversion"]["max_abs_logit_diff"] < TOLERANCE
    f = result["features"]
    assert f["only_circuit_tracer"] == 0 and f["only_ours_all_at_position_0"] and f["common"] == f["circuit_tracer"] > 0
    assert f["max_abs_activation_diff"] < TOLERANCE
    assert result["embedding_edges_as_recorded"]["max_abs_residual_after_removing_positional_part"] < TOLERANCE
    prune = result["pruning_on_our_adjacency"]
    assert prune["nodes_equal"] and prune["edges_equal"]
    assert math.isclose(prune["replacement_circuit_tracer"], prune["replacement_glassbox"], abs_tol=1e-6)
    venv = result["versions"]["crosscheck_venv"]
    assert venv["circuit-tracer"] == "0.5.0" and {"python", "torch", "transformer-lens", "transformers"} <= set(venv)


def test_crosscheck_was_made_from_the_committed_checkpoints_and_prompt(result):
    for rel, digest in result["checkpoint_sha256"].items():
        path = paths.ROOT / rel
        assert path.is_file(), f"{rel} is gone: rerun make crosscheck"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{rel} changed since the crosscheck: rerun make crosscheck"
    names = {rel.split("/")[1] for rel in result["checkpoint_sha256"]}
    assert {"lm_shakespeare.pt", "transcoder_lm_shakespeare_l0", "transcoder_lm_shakespeare_l1"} <= names
    card = json.loads((paths.CHECKPOINT_DIR / "lm_shakespeare.json").read_text())
    assert result["model_recipe_sha256"] == card["recipe_sha256"], "the model's architecture changed: rerun make crosscheck"
    assert result["prompt"] == findings.load("10_circuit_tracing")["prompt"], "notebook 10's prompt changed: rerun make crosscheck"

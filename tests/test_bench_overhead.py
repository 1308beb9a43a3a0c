"""The overhead benchmarks (tests/benchmarks/bench_overhead.py) on tiny sizes: each returns its row, and each
plain loop reproduces the glassbox loop's weights exactly (so the ratio compares the same work). No timing is
asserted: speed is measured by `make bench`."""
import importlib.util

import pytest

from glassbox import paths
from glassbox.studies import models

spec = importlib.util.spec_from_file_location("bench_overhead", paths.ROOT / "tests" / "benchmarks" / "bench_overhead.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
PEAK_GFLOPS = bench.peak_gflops
ROW = {"ratio_to_plain", "glassbox_seconds", "plain_seconds", "peak_fraction", "plain_peak_fraction", "reps", "threads"}


@pytest.fixture(autouse=True)
def unit_peak(monkeypatch):
    monkeypatch.setattr(bench, "peak_gflops", lambda threads: 1.0)  # the real one times 2048 x 2048 matmuls


def test_peak_gflops_is_positive_on_a_small_matmul():
    assert PEAK_GFLOPS(1, n=64, reps=1) > 0


@pytest.mark.parametrize("run", [lambda: bench.bench_overhead_mnist_mlp_training(steps=3, reps=1),
                                 lambda: bench.bench_overhead_sae_training(n_samples=3 * 512, reps=1),
                                 lambda: bench.bench_overhead_char_lm_training(steps=2, reps=1, batch_size=2)],
                         ids=["mnist_mlp", "sae", "char_lm"])
def test_the_plain_loop_does_the_glassbox_loops_work(run):
    row = run()
    assert ROW <= set(row), f"missing keys: {ROW - set(row)}"
    assert row["same_weights"], "the plain loop ended at other weights than the glassbox loop: it is not the same work"


def test_capture_rows_and_the_lm_target():
    for row in (bench.bench_overhead_capture_mnist_mlp(batch_size=8, inner=1, reps=1),
                bench.bench_overhead_capture_char_lm(batch_size=2, inner=1, reps=1)):
        assert ROW <= set(row), f"missing keys: {ROW - set(row)}"
    assert bench.bench_overhead_char_lm_training(steps=1, reps=1, batch_size=1)["peak_fraction_target"] == ">= 0.40"


def test_the_plain_transformer_has_the_bridges_parameters():
    cfg = models.TransformerConfig()
    assert models.n_params(bench.PlainTransformer(cfg)) == models.n_params(models.build("transformer", models.config_dict(cfg)))
    assert bench._matmul_params(bench.PlainTransformer(cfg)) == models.n_params(bench.PlainTransformer(cfg)) - cfg.d_model * (cfg.d_vocab + cfg.n_ctx)

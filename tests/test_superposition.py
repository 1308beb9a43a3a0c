"""Unit tests of glassbox.studies.superposition: the batched toy model, its data, its training and its geometry."""
import math

import numpy as np
import pytest
import torch

from glassbox.studies import superposition as sp


def regular_polygon(k: int, radius: float = 1.0) -> torch.Tensor:
    """W of shape (2, k): k unit vectors spaced evenly round the circle."""
    theta = torch.arange(k) * 2 * math.pi / k
    return radius * torch.stack([theta.cos(), theta.sin()])


def test_shapes_of_model_samples_and_activations():
    model = sp.ToyModel(n_features=7, n_hidden=3, n_instances=4, feature_probability=torch.tensor([0.1, 0.2, 0.5, 1.0]).reshape(4, 1))
    assert model.W.shape == (4, 3, 7) and model.b.shape == (4, 7)
    assert model.feature_probability.shape == (4, 7) and model.importance.shape == (4, 7)
    x, h = sp.sample_activations(model, 32, generator=torch.Generator().manual_seed(0))
    assert x.shape == (32, 4, 7) and h.shape == (32, 4, 3)
    assert model(x).shape == (32, 4, 7) and model.loss(x).shape == (4,)
    manual_h = torch.stack([x[:, i] @ model.W[i].T for i in range(4)], 1)
    assert torch.allclose(h, manual_h, atol=1e-6), "h must be W x for each instance separately"
    manual_out = torch.relu(torch.stack([manual_h[:, i] @ model.W[i] for i in range(4)], 1) + model.b)
    assert torch.allclose(model(x), manual_out, atol=1e-6), "did the ReLU or the bias go in the wrong place?"


def test_sparsity_sets_how_often_each_feature_is_on_and_values_are_uniform():
    p = torch.tensor([[1.0, 0.5, 0.1, 0.01]])
    x = sp.sample_features(200_000, p, torch.Generator().manual_seed(0))
    on = (x > 0).float().mean(0)[0]
    assert torch.allclose(on, p[0], rtol=0.05), f"fraction of non-zero features {on.tolist()} should equal p {p[0].tolist()}"
    assert x.min() == 0 and 0.99 < x.max() <= 1, "values fill [0, 1]"
    nonzero = x[..., 2][x[..., 2] > 0]
    assert abs(nonzero.mean().item() - 0.5) < 0.01 and abs(nonzero.var().item() - 1 / 12) < 0.005, \
        "an active feature must be uniform in [0, 1] (mean 1/2, variance 1/12)"
    a, b = (sp.sample_features(8, p, torch.Generator().manual_seed(s)) for s in (1, 1))
    assert torch.equal(a, b), "the same generator seed must give the same samples"


def test_loss_weights_each_feature_by_its_importance():
    model = sp.ToyModel(3, 2, 1, importance=torch.tensor([1.0, 10.0, 0.0]))
    x = sp.sample_features(64, model.feature_probability, torch.Generator().manual_seed(0))
    err = (model(x) - x) ** 2
    expected = (err[..., 0] + 10 * err[..., 1]).mean()
    assert torch.allclose(model.loss(x)[0], expected), "loss must be the mean over the batch of sum_i I_i (x_i - x'_i)^2"


def test_importance_decides_which_feature_a_single_dense_dimension_keeps():
    torch.manual_seed(0)
    model = sp.ToyModel(2, 1, 2, importance=torch.tensor([[1.0, 0.1], [0.1, 1.0]]))
    sp.train_toy(model, steps=600, batch_size=256, lr=2e-2)
    norms = sp.feature_norms(model.W.detach())
    assert norms[0, 0] > 0.9 > 0.2 > norms[0, 1], f"the important feature 0 should own the dimension, norms {norms[0].tolist()}"
    assert norms[1, 1] > 0.9 > 0.2 > norms[1, 0], f"swapping importances should swap the kept feature, norms {norms[1].tolist()}"


def test_sparsity_lets_two_features_share_one_dimension_antipodally():
    # instances laid out (seed, condition): condition 0 dense with importances [1, 0.7], condition 1 sparse
    # (p = 0.03) with equal importances; 8 seeds, because about half the seeds stop in a local minimum
    # where both weights keep the same sign (one would have to pass through 0 to become antipodal)
    torch.manual_seed(0)
    model = sp.ToyModel(2, 1, 16, feature_probability=torch.tensor([1.0, 0.03] * 8).reshape(16, 1),
                        importance=torch.tensor([[1.0, 0.7], [1.0, 1.0]] * 8))
    sp.train_toy(model, steps=1500, batch_size=512, lr=2e-2, seed=1)
    W = model.W.detach()[sp.best_of_seeds(sp.evaluate_loss(model), 8), 0]
    assert W[0, 0].abs() > 0.9 > 0.2 > W[0, 1].abs(), f"dense: only feature 0 fits in one dimension, W = {W[0].tolist()}"
    assert (W[1].abs() > 0.9).all() and W[1, 0] * W[1, 1] < 0, \
        f"sparse: both features should be stored with opposite signs (W = [1, -1]), got {W[1].tolist()}"


def test_a_model_with_as_many_dimensions_as_features_learns_the_identity():
    torch.manual_seed(0)
    model = sp.ToyModel(3, 3, 1, feature_probability=0.5)
    sp.train_toy(model, steps=1500, batch_size=256, lr=1e-2)
    WtW = model.W.detach()[0].T @ model.W.detach()[0]
    assert torch.allclose(WtW, torch.eye(3), atol=0.05), f"known optimum W^T W = I, b = 0; got\n{WtW}"
    assert sp.evaluate_loss(model, 8192).item() < 1e-3


def test_theoretical_losses_match_the_candidate_models_sampled():
    r, p = torch.tensor([0.5, 2.0]), torch.tensor([0.3, 0.8])
    model = sp.ToyModel(2, 1, 6, feature_probability=p.repeat(3).reshape(6, 1),
                        importance=torch.stack([torch.ones(2), r], -1).repeat(3, 1))
    with torch.no_grad():
        model.W[:] = torch.tensor([[1.0, 0.0]] * 2 + [[0.0, 1.0]] * 2 + [[1.0, -1.0]] * 2).unsqueeze(1)
        model.b[:] = 0
        model.b[0:2, 1], model.b[2:4, 0] = p / 2, p / 2
    sampled = sp.evaluate_loss(model, 400_000).reshape(3, 2).T
    theory = sp.theoretical_loss(r, p).float()
    assert torch.allclose(sampled, theory, rtol=0.03), f"closed forms {theory.tolist()} vs sampled {sampled.tolist()}"
    assert sp.theoretical_phase(torch.tensor(0.1), torch.tensor(1.0)).item() == 0, "dense + unimportant: dropped"
    assert sp.theoretical_phase(torch.tensor(10.0), torch.tensor(1.0)).item() == 1, "dense + important: dedicated"
    assert sp.theoretical_phase(torch.tensor(1.0), torch.tensor(0.01)).item() == 2, "sparse: superposition"


def test_geometry_of_hand_built_arrangements():
    pentagon = regular_polygon(5).unsqueeze(0)
    assert torch.allclose(sp.feature_dimensionality(pentagon), torch.full((1, 5), 0.4), atol=1e-5), "a pentagon gives 2/5"
    assert torch.allclose(sp.neighbour_angles(pentagon[0]), torch.full((5,), 72.0), atol=1e-4)
    antipodal = torch.tensor([[[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]]])
    assert torch.allclose(sp.feature_dimensionality(antipodal), torch.full((1, 4), 0.5)), "antipodal pairs give 1/2"
    assert torch.allclose(sp.dimensions_per_feature(antipodal), torch.tensor([0.5]))
    eye = torch.eye(3).unsqueeze(0)
    assert torch.allclose(sp.feature_dimensionality(eye), torch.ones(1, 3)) and sp.superposition(eye).abs().max() < 1e-6
    dropped = torch.tensor([[[1.0, 0.0, 0.0]]])
    assert sp.count_represented(dropped).item() == 1 and sp.feature_dimensionality(dropped)[0, 1] == 0
    assert sp.superposition(antipodal)[0, 0].item() == pytest.approx(1.0), "feature 0 shares with its antipode only"
    assert sp.sticky_share(torch.tensor([1.0, 0.5, 0.41, 0.2])) == 0.75
    counts = sp.count_sticky(torch.tensor([1.0, 0.99, 0.5, 0.39, 0.38, 0.2]))
    assert counts == {"1": 2, "3/4": 0, "2/3": 0, "1/2": 1, "2/5": 1, "3/8": 1}, f"nearest fraction wins, got {counts}"


def test_phase_classification_and_sweep_layout():
    W = torch.tensor([[[1.0, 0.0]], [[0.1, 0.95]], [[0.9, -1.0]], [[0.9, 1.0]]])
    assert sp.classify_phase(W).tolist() == [0, 1, 2, 3], "both kept: superposition only with opposite signs, else code 3"
    assert sp.PHASES[3] == "both, same sign"
    imp, prob = sp.phase_sweep(torch.tensor([0.1, 10.0]), torch.tensor([0.01, 0.1, 1.0]), n_seeds=2)
    assert imp.shape == prob.shape == (12, 2)
    assert imp[4].tolist() == pytest.approx([1.0, 10.0]) and prob[4].tolist() == pytest.approx([0.1, 0.1]), \
        "instances are laid out (seed, importance, density)"
    assert torch.equal(imp[:6], imp[6:]), "every seed repeats the same grid"
    assert sp.best_of_seeds(torch.tensor([3.0, 1.0, 2.0, 5.0]), 2).tolist() == [2, 1]


def test_geometry_works_on_any_weight_matrix(tiny_cnn):
    W = tiny_cnn.head[1].weight.detach().unsqueeze(0)  # (1, 16, 200): 200 inputs as features in 16 dimensions
    D = sp.feature_dimensionality(W)
    assert D.shape == (1, 200) and (D >= 0).all() and (D <= 1 + 1e-5).all(), "D_i lies in [0, 1] for any W"
    Wn = W[0].double().numpy()
    norms = np.linalg.norm(Wn, axis=0)
    overlap = ((Wn / norms).T @ Wn) ** 2  # [i, j] = (W_i_hat . W_j)^2
    assert np.allclose(D[0].numpy(), norms ** 2 / overlap.sum(1), rtol=1e-4), "D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2"
    assert np.allclose(sp.superposition(W)[0].numpy(), overlap.sum(1) - np.diag(overlap), rtol=1e-4, atol=1e-6)
    assert np.allclose(sp.feature_norms(W)[0].numpy(), norms, rtol=1e-5)
    assert sp.dimensions_per_feature(W).item() == pytest.approx(16 / (Wn ** 2).sum(), rel=1e-5)
    assert sp.count_represented(W, threshold=float(np.median(norms))).item() == int((norms > np.median(norms)).sum())
    assert sp.superposition(W).shape == (1, 200) and sp.dimensions_per_feature(W).shape == (1,)


def test_bad_parameters_give_clear_errors():
    with pytest.raises(ValueError, match="n_hidden must be a positive int"):
        sp.ToyModel(5, 0)
    with pytest.raises(ValueError, match=r"feature_probability \(= 1 - sparsity\) must lie in \(0, 1\]"):
        sp.ToyModel(5, 2, feature_probability=0.0)
    with pytest.raises(ValueError, match="1 - S"):
        sp.ToyModel(5, 2, feature_probability=1.5)
    with pytest.raises(ValueError, match="importance must be finite and >= 0"):
        sp.ToyModel(5, 2, importance=-1.0)
    with pytest.raises(ValueError, match=r"broadcast to \(instances, features\) = \(2, 5\)"):
        sp.ToyModel(5, 2, 2, importance=torch.ones(3))
    model = sp.ToyModel(5, 2, 2)
    with pytest.raises(ValueError, match=r"expected features of shape \(batch, instances, features\) = \(batch, 2, 5\)"):
        model(torch.rand(8, 5))
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        sp.train_toy(model, steps=1, batch_size=0)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        sp.train_toy(model, steps=0)
    with pytest.raises(ValueError, match=r"shape \(2, features\)"):
        sp.neighbour_angles(torch.rand(3, 5))
    with pytest.raises(ValueError, match=r"shape \(instances, 1, 2\)"):
        sp.classify_phase(torch.rand(4, 2, 2))
    with pytest.raises(ValueError, match="n_seeds x conditions"):
        sp.best_of_seeds(torch.rand(5), 2)


def test_train_restores_the_thread_setting():
    before = torch.get_num_threads()
    sp.train_toy(sp.ToyModel(2, 1), steps=2, batch_size=4)
    assert torch.get_num_threads() == before, "train_toy must leave torch's thread count as it found it"


def test_neighbour_angles_sort_the_directions_around_the_circle():
    deg = torch.tensor([200.0, 0.0, 90.0])
    W = torch.stack([torch.cos(torch.deg2rad(deg)), torch.sin(torch.deg2rad(deg))]) * torch.tensor([2.0, 0.5, 1.0])
    assert torch.allclose(sp.neighbour_angles(W), torch.tensor([160.0, 90.0, 110.0]), atol=1e-4), \
        "gaps between consecutive angles from -180 degrees up, the last one wrapping round"


def test_best_of_seeds_with_more_seeds_than_conditions():
    losses = torch.tensor([5.0, 1.0, 2.0, 3.0, 4.0, 0.0])  # (seed, condition) = (3, 2)
    assert sp.best_of_seeds(losses, 3).tolist() == [2, 5], "condition 0: seed 1 (index 2); condition 1: seed 2 (index 5)"


def test_thresholds_and_tolerances_are_used():
    W = torch.tensor([[[0.3, 0.6]], [[0.7, 0.7]]])
    assert sp.classify_phase(W).tolist() == [1, 3] and sp.classify_phase(W, threshold=0.65).tolist() == [0, 3]
    assert sp.count_represented(W.transpose(1, 2), threshold=0.7).tolist() == [0, 1]
    D = torch.tensor([0.95, 0.7, 0.3])
    assert sp.sticky_share(D) == 0.0 and sp.sticky_share(D, tolerance=0.06) == pytest.approx(2 / 3)
    assert sp.count_sticky(D, tolerance=0.06) == {"1": 1, "3/4": 0, "2/3": 1, "1/2": 0, "2/5": 0, "3/8": 0}, \
        "0.7 is within 0.06 of 3/4 and of 2/3: the nearest (2/3) wins; 0.3 is near none"


def test_theoretical_loss_on_hand_computed_values():
    got = sp.theoretical_loss(torch.tensor(2.0), torch.tensor(0.5))
    v = 0.5 / 3 - 0.25 / 4
    assert torch.allclose(got, torch.tensor([2 * v, v, 0.25 * 3 / 6], dtype=torch.float64)), \
        "[r v, v, p^2 (1 + r) / 6] with v = p/3 - p^2/4"
    assert sp.theoretical_phase(torch.tensor([2.0, 0.5]), torch.tensor([0.5, 1.0])).tolist() == [1, 0]


def test_evaluate_loss_in_chunks_equals_one_batch_of_the_same_samples():
    torch.manual_seed(0)
    model = sp.ToyModel(2 ** 21 + 1, 1, feature_probability=0.3)  # so large that every chunk holds one sample
    got = sp.evaluate_loss(model, n_samples=3, seed=5)
    with torch.no_grad():
        expected = model.loss(sp.sample_features(3, model.feature_probability, torch.Generator().manual_seed(5)))
    assert torch.allclose(got, expected, rtol=1e-5), "chunks must be weighted by their size and use the seeded stream"
    assert not torch.allclose(got, sp.evaluate_loss(model, n_samples=3, seed=6))


def test_sample_activations_are_the_hidden_image_of_the_sampled_features():
    torch.manual_seed(0)
    model = sp.ToyModel(5, 2, 3, feature_probability=0.5)
    x, h = sp.sample_activations(model, 7, generator=torch.Generator().manual_seed(1))
    assert torch.equal(x, sp.sample_features(7, model.feature_probability, torch.Generator().manual_seed(1)))
    assert torch.allclose(h, torch.einsum("ihf,bif->bih", model.W, x), atol=1e-6) and not h.requires_grad


def test_phase_losses_score_trained_and_candidate_solutions_on_the_same_samples():
    r, p = torch.tensor([0.5, 2.0, 1.0]), torch.tensor([0.3, 0.8, 0.05])
    importance, probability = sp.phase_sweep(r, p)  # 9 cells
    cand_W, cand_b = sp.candidate_solutions(probability[:, 1])
    losses = sp.phase_losses(cand_W[2], cand_b[2], importance, probability, n_samples=200_000)
    assert losses.shape == (9, 4)
    assert torch.allclose(losses[:, 0], losses[:, 3]), "the superposition candidate given as 'trained' must score exactly as column 3"
    closed = sp.theoretical_loss(importance[:, 1], probability[:, 1]).float()
    assert torch.allclose(losses[:, 1:], closed, rtol=0.1), f"sampled {losses[:, 1:].tolist()} vs closed forms {closed.tolist()}"
    better = cand_W[2].clone()
    better[:, 0, 1] *= 0.9  # a different solution gets a different loss: the first column is not a copy
    assert not torch.allclose(sp.phase_losses(better, cand_b[2], importance, probability, n_samples=4096)[:, 0], losses[:, 3])
    with pytest.raises(ValueError, match=r"W \(cells, 1, 2\)"):
        sp.phase_losses(torch.rand(9, 2, 2), cand_b[2], importance, probability)

"""Each bad input that once gave a silently wrong answer is now an error naming the argument, the value
and what would be accepted (issue 13's list)."""
import pytest
import torch

from glassbox import ablation, sae
from glassbox.studies import backdoor, find_median, models


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    return models.build_mlp({"sizes": [784, 8, 6, 10]}).eval()


def test_fine_prune_refuses_a_k_outside_the_layer(mlp):
    x, y = torch.rand(32, 784), torch.randint(0, 10, (32,))
    for k in (-1, 8, 1.5):
        with pytest.raises(ValueError, match=rf"k \(neurons to prune\) must be an int in 0\.\.7 for 'relu1', got {k}"):
            backdoor.fine_prune(mlp, "relu1", k, x, y, reader="fc2", steps=0)
    pruned = backdoor.fine_prune(mlp, "relu1", 7, x, y, reader="fc2", steps=0)
    assert int((pruned.fc2.weight.abs().sum(0) == 0).sum()) == 7, "k=7 prunes 7 neurons, no more"


def test_attack_success_rate_refuses_a_class_the_model_does_not_have(mlp):
    x, y = torch.rand(16, 784), torch.zeros(16, dtype=torch.long)
    with pytest.raises(ValueError, match=r"target must be a class index in 0\.\.9, got 12"):
        backdoor.attack_success_rate(mlp, x, y, 12)
    with pytest.raises(ValueError, match=r"got -1"):
        backdoor.attack_success_rate(mlp, x, y, -1)


@pytest.mark.parametrize("share", [0, -0.5, 1.01, 2])
def test_neurons_for_share_refuses_a_share_outside_0_1(share):
    with pytest.raises(ValueError, match=rf"share must be in \(0, 1\], got {share}"):
        backdoor.neurons_for_share(torch.tensor([3.0, 1.0]), share)
    assert backdoor.neurons_for_share(torch.tensor([3.0, 1.0]), 1.0) == 2


@pytest.mark.parametrize("latents", [[-1], [12], [0, 99]])
def test_ablating_a_latent_that_does_not_exist_is_an_error(latents):
    with pytest.raises(ValueError, match=r"latent indices must be in 0\.\.11"):
        sae.ablate_latents(latents)(torch.ones(3, 12))
    with pytest.raises(ValueError, match=r"latent indices must be in 0\.\.11"):
        sae.clamp_latent(latents[-1], 1.0)(torch.ones(3, 12))


def test_a_reader_that_does_not_read_the_layer_is_refused(mlp):
    with pytest.raises(ValueError, match="reader 'out' does not read 'relu1'.*'fc2'"):
        ablation.ablate_in_weights(mlp, "relu1", [0], reader="out")
    ablation.ablate_in_weights(mlp, "relu2", [0], reader="out")


@pytest.mark.parametrize("family", ["consecutive", "spaced"])
def test_list_families_that_need_distinct_values_refuse_a_small_vocabulary(family):
    with pytest.raises(ValueError, match=rf"the '{family}' family needs vocab >= length.*vocab=5, length=7"):
        find_median.make_lists(4, length=7, vocab=5, family=family)
    x = find_median.make_lists(50, length=7, vocab=7, family=family)
    assert all(len(set(row.tolist())) == 7 for row in x), f"{family} lists must hold distinct values"

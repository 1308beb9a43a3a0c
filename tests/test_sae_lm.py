"""glassbox.sae on a language model: activation stream, per-token activations, splicing by hook name,
loss recovered. A tiny untrained 1-layer transformer (TransformerLens bridge) stands in for the LM."""
import pytest
import torch

from glassbox import lm, sae
from glassbox.studies import models

HOOK, MLP_OUT = "blocks.0.mlp.hook_post", "blocks.0.hook_mlp_out"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = models.build("transformer", dict(n_layers=1, n_heads=2, d_model=16, d_head=8, d_mlp=32, d_vocab=11, n_ctx=8,
                                         act_fn="relu", seed=0))
    return m.eval()


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 11, (200,), generator=torch.Generator().manual_seed(1))


def test_lm_activations_row_i_belongs_to_token_i(model, tokens):
    acts = sae.lm_activations(model, tokens, HOOK, n_ctx=8, batch_size=3)
    assert acts.shape == (200 // 8 * 8, 32)
    _, cache = model.run_with_cache(tokens[16:24][None], names_filter=HOOK)
    assert torch.allclose(acts[16:24], cache[HOOK][0], atol=1e-5), "rows 16..23 must be the third window, in order"
    assert not torch.allclose(acts[17:25], cache[HOOK][0], atol=1e-5), "off by one position"


def test_lm_activation_batches_are_activations_of_real_windows(model, tokens):
    batches = sae.lm_activation_batches(model, tokens, HOOK, batch_size=10, n_ctx=8, windows_per_pass=4, seed=0)
    first = [next(batches) for _ in range(3)]  # one pass: 32 activations -> 3 full batches of 10
    assert all(b.shape == (10, 32) for b in first)
    every = sae.lm_activations(model, tokens, HOOK, n_ctx=8)
    # ReLU activations of this model: each row must be an activation of some window position (compare with all windows)
    windows = tokens.unfold(0, 8, 1)
    _, cache = model.run_with_cache(windows, names_filter=HOOK)
    pool = cache[HOOK].reshape(-1, 32)
    for row in torch.cat(first):
        assert (pool - row).abs().amax(1).min() < 1e-5, "a batch row is not the activation of any window position"
    assert every.shape[1] == 32
    with pytest.raises(ValueError, match="fewer than batch_size"):
        next(sae.lm_activation_batches(model, tokens, HOOK, batch_size=100, n_ctx=8, windows_per_pass=4))


@pytest.fixture(scope="module")
def tiny_sae():
    torch.manual_seed(0)
    return sae.to_inference(sae.make_sae("topk", 32, 64, k=4))


def test_lm_sae_hook_replaces_by_the_reconstruction(model, tokens, tiny_sae):
    x = torch.rand(2, 8, 32)
    out = sae.lm_sae_hook(tiny_sae)(x, None)
    assert out.shape == x.shape
    assert torch.allclose(out.reshape(-1, 32), tiny_sae.decode(tiny_sae.encode(x.reshape(-1, 32))), atol=1e-6)
    assert torch.allclose(sae.lm_sae_hook(tiny_sae, keep_error=True)(x, None), x, atol=1e-5), \
        "keep_error without an edit must give the activation back"


def test_lm_loss_matches_next_token_loss_and_hooks_change_it(model, tokens, tiny_sae):
    windows = tokens[:90].view(10, 9)
    assert sae.lm_loss(model, windows, batch_size=4) == pytest.approx(lm.next_token_loss(model, windows).item(), rel=1e-5)
    ablated = sae.lm_loss(model, windows, [(MLP_OUT, sae.zero_ablation_hook)])
    spliced = sae.lm_loss(model, windows, [(HOOK, sae.lm_sae_hook(tiny_sae))])
    assert ablated != pytest.approx(sae.lm_loss(model, windows)) and spliced != pytest.approx(ablated), "hooks must act"


def test_loss_recovered():
    assert sae.loss_recovered(1.0, 1.0, 3.0) == 1.0
    assert sae.loss_recovered(1.0, 3.0, 3.0) == 0.0
    assert sae.loss_recovered(1.0, 1.5, 3.0) == pytest.approx(0.75), "(ablated - spliced) / (ablated - clean)"
    with pytest.raises(ValueError, match="ablating should raise the loss"):
        sae.loss_recovered(2.0, 1.0, 1.5)

"""The tools run where the model is, in its dtype (issue 24, devices).

On the CPU: float64 and bfloat16 copies of small models give results in the model's dtype, close to the
float32 ones (bfloat16 has 8 bits of mantissa: about 1% per operation, so its tolerances are loose).
On a GPU (skipped here with its reason where there is none): capture, ablation and SAE training on cuda
match the CPU. A static check keeps `device="cpu"` from being hard-coded into a tool again.
"""
import copy
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from glassbox import ablation, attribution, checks, circuits, hooks, lm, neurons, sae, training
from glassbox.studies import backdoor, grokking, models, pruning, superposition
from glassbox.studies.models import build_attn_only_transformer, build_mlp, build_transformer

TOOLS = Path(__file__).resolve().parents[1] / "src" / "glassbox"
LOOSE = {torch.float64: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=0.05, atol=0.05)}
DTYPES = pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16], ids=["float64", "bfloat16"])


@pytest.fixture(scope="module")
def mlp32():
    torch.manual_seed(0)
    return build_mlp({"sizes": [784, 32, 16, 10]}).eval()


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    return torch.rand(64, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)


@pytest.fixture(scope="module")
def seq32():
    """A model glassbox did not build: a plain nn.Sequential of Linear and ReLU layers (int module names)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 5)).eval()


def close(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> bool:
    return torch.allclose(a.double(), b.double(), **LOOSE[dtype])


def test_placement_reads_the_first_floating_parameter_or_buffer():
    assert checks.placement(nn.Linear(2, 2).double()) == (torch.device("cpu"), torch.float64)
    assert checks.placement(nn.Linear(2, 2).bfloat16()) == (torch.device("cpu"), torch.bfloat16)
    assert checks.placement(nn.ReLU()) == (torch.device("cpu"), torch.float32), "a module with no tensors: CPU, float32"
    norm = nn.BatchNorm1d(3, affine=False).double()  # buffers only, the first one floating
    assert checks.placement(norm) == (torch.device("cpu"), torch.float64)


@DTYPES
def test_activations_ablation_and_accuracy_follow_the_model_dtype(mlp32, data, dtype):
    x, y = data
    model = copy.deepcopy(mlp32).to(dtype)
    acts32, acts = neurons.get_activations(mlp32, "relu1", x), neurons.get_activations(model, "relu1", x)
    assert acts.dtype == dtype and close(acts, acts32, dtype), "activations must come in the model's dtype"
    means = acts.mean(0)
    with ablation.ablate(model, "relu1", [0, 3], means):
        ablated = model(x)
    with ablation.ablate(mlp32, "relu1", [0, 3], acts32.mean(0)):
        ablated32 = mlp32(x)
    assert ablated.dtype == dtype and close(ablated, ablated32, dtype)
    folded = ablation.ablate_in_weights(model, "relu1", [0, 3], means, reader="fc2")
    assert close(folded(x), ablated, dtype), "the folded ablation must match the hooked one in the model's dtype"
    drop = ablation.class_accuracy_drop(model, "relu1", x, y, means, neurons=[0, 1])
    assert drop.shape == (10, 2) and drop.isfinite().all()
    assert ablation.flip_rate(model, "relu1", x, 3, [0], means) == pytest.approx(
        ablation.flip_rate(mlp32, "relu1", x, 3, [0], acts32.mean(0)), abs=0.1)
    class_means = neurons.class_means(acts, y)
    assert class_means.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert close(class_means, neurons.class_means(acts32, y), dtype)


@DTYPES
def test_tools_follow_the_dtype_of_a_model_glassbox_did_not_build(seq32, dtype):
    x = torch.randn(40, 12, generator=torch.Generator().manual_seed(2))
    model = copy.deepcopy(seq32).to(dtype)
    with hooks.capture(model, "1") as acts:
        out = model(x.to(dtype))
    assert acts["1"].dtype == dtype and out.dtype == dtype
    logits = training.predict(model, x.to(dtype))
    assert close(logits, training.predict(seq32, x), dtype)
    with ablation.ablate(model, "1", torch.tensor([True] + [False] * 23)):
        assert model(x.to(dtype)).dtype == dtype
    effect = sae.logit_effect(model, "3", torch.ones(24), x.to(dtype))  # a float32 direction into a model of another dtype
    assert effect.dtype == dtype and close(effect, sae.logit_effect(seq32, "3", torch.ones(24), x), dtype)
    scales = neurons.get_activations(model, "3", x.to(dtype)).amax(0)
    effects = sae.neuron_logit_effects(model, "3", x[:8].to(dtype), scales)
    assert effects.dtype == dtype and effects.shape == (24, 5)


@DTYPES
def test_attribution_runs_in_the_model_dtype(mlp32, data, dtype):
    x, y = data
    model = copy.deepcopy(mlp32).to(dtype)
    for method in ("integrated_gradients", "saliency", "occlusion"):
        attr32 = attribution.attribute(mlp32, x[:4], y[:4], method)
        attr = attribution.attribute(model, x[:4], y[:4], method)
        assert attr.dtype == dtype and attr.shape == x[:4].shape, method
        rho = attribution.rank_correlation(attr, attr32, absolute=True)
        assert (rho > 0.8).all(), f"{method} in {dtype} should rank pixels like float32 does, got {rho.tolist()}"


@DTYPES
def test_sae_spliced_into_a_model_of_another_dtype(mlp32, data, dtype):
    """An SAE (float32, SAELens' default) reads the activations of a float64 or bfloat16 model and
    writes its reconstruction back in the model's dtype, so the forward pass goes on."""
    x, y = data
    torch.manual_seed(0)
    acts = sae.collect_activations(mlp32, "relu1", x)
    trained, _ = sae.train_sae(sae.make_sae("topk", 32, 64, k=8), acts, n_samples=1024, batch_size=32)
    model = copy.deepcopy(mlp32).to(dtype)
    with sae.splice(model, "relu1", trained, check_hook=False):
        spliced = model(x)
    with sae.splice(mlp32, "relu1", trained, check_hook=False):
        spliced32 = mlp32(x)
    assert spliced.dtype == dtype and close(spliced, spliced32, dtype)
    with sae.splice(model, "relu1", trained, edit=sae.ablate_latents([0]), keep_error=True, check_hook=False):
        assert model(x).dtype == dtype
    latents = sae.encode(trained, neurons.get_activations(model, "relu1", x))
    assert latents.dtype == torch.float32, "latents are computed in the SAE's dtype"
    assert sae.spliced_accuracy(model, "relu1", trained, x, y) == pytest.approx(
        sae.spliced_accuracy(mlp32, "relu1", trained, x, y), abs=0.1)


def test_train_and_train_sae_take_a_device_and_keep_cpu_results(mlp32, data):
    """device="cpu" given explicitly changes nothing, bit for bit, against the default."""
    x, y = data
    runs = []
    for device in (None, "cpu", torch.device("cpu")):
        torch.manual_seed(0)
        model = build_mlp({"sizes": [784, 16, 10]})
        kw = {} if device is None else {"device": device}
        training.train(model, training.minibatches(x, y, 16), steps=5, **kw)
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert all(torch.equal(runs[0], r) for r in runs[1:])
    acts = sae.collect_activations(mlp32, "relu1", x)
    saes = []
    for device in (None, "cpu"):
        torch.manual_seed(0)
        kw = {} if device is None else {"device": device}
        made = sae.make_sae("topk", 32, 64, k=4, **kw)
        trained, _ = sae.train_sae(made, acts, n_samples=512, batch_size=32, **kw)
        assert trained.W_dec.device.type == "cpu"
        saes.append(trained.W_dec.detach())
    assert torch.equal(*saes)


@DTYPES
def test_training_keeps_the_model_dtype(data, dtype):
    x, y = data
    torch.manual_seed(0)
    model32 = build_mlp({"sizes": [784, 16, 10]})
    model = copy.deepcopy(model32).to(dtype)
    h32 = training.train(model32, training.minibatches(x, y, 16), steps=5)
    h = training.train(model, training.minibatches(x, y, 16), steps=5)
    assert all(p.dtype == dtype for p in model.parameters())
    assert h.last("loss") == pytest.approx(h32.last("loss"), abs=1e-4 if dtype == torch.float64 else 0.05)


@pytest.fixture(scope="module")
def median32():
    return build_attn_only_transformer({"d_model": 16, "d_head": 16, "d_vocab": 20, "n_ctx": 5}).eval()


@DTYPES
def test_circuits_follow_the_model_dtype(median32, dtype):
    model = copy.deepcopy(median32).to(dtype)
    tokens = torch.randint(0, 20, (8, 5), generator=torch.Generator().manual_seed(3))
    parts, _ = circuits.get_logit_components(model, tokens)
    parts32, _ = circuits.get_logit_components(median32, tokens)
    assert parts.dtype == dtype and close(parts, parts32, dtype)
    _, cache = model.run_with_cache(tokens)
    for how in ("zero", "mean", "resample"):
        hooks_ = circuits.ablate_hooks("blocks.0.attn.hook_v", how, cache["blocks.0.attn.hook_v"])
        assert circuits.predict_last(model, tokens, hooks_).shape == (8,)
    pattern = circuits.last_query_pattern(torch.randn(8, 5, dtype=dtype))
    assert pattern.dtype == dtype
    assert model.run_with_hooks(tokens, fwd_hooks=circuits.set_pattern_hooks(pattern)).dtype == dtype
    mean = circuits.mean_by_token(cache["blocks.0.attn.hook_pattern"][:, 0, -1], tokens, 20)
    assert mean.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)


@DTYPES
def test_language_model_tools_follow_the_model_dtype(dtype):
    model32 = build_transformer({"n_layers": 1, "n_heads": 2, "d_model": 16, "d_head": 8, "d_mlp": 32,
                                 "d_vocab": 11, "n_ctx": 8}).eval()
    model = copy.deepcopy(model32).to(dtype)
    tokens = torch.randint(0, 11, (200,), generator=torch.Generator().manual_seed(4))
    assert lm.evaluate_loss(model, tokens, 8, n_windows=8) == pytest.approx(
        lm.evaluate_loss(model32, tokens, 8, n_windows=8), abs=1e-5 if dtype == torch.float64 else 0.05)
    assert len(lm.sample(model, tokens[:3], 4, 8)) == 7
    acts = sae.lm_activations(model, tokens, "blocks.0.hook_mlp_out", 8)
    assert acts.shape == (200 // 8 * 8, 16) and acts.dtype == torch.float32, "SAE inputs are float32"
    windows = torch.stack(list(tokens[:180].view(20, 9)))
    assert sae.lm_loss(model, windows, [("blocks.0.hook_mlp_out", sae.zero_ablation_hook)]) > 0


def test_study_training_loops_take_a_device_and_keep_cpu_results():
    """grokking.train_full_batch and superposition.train_toy with device="cpu" match their defaults bit for bit."""
    data = grokking.make_data(7, 0.5, 0)
    params = []
    for kw in ({}, {"device": "cpu"}):
        model = models.build("transformer", grokking.model_config(7, 0, d_model=8, n_heads=2, d_mlp=16))
        grokking.train_full_batch(model, data, epochs=3, lr=1e-3, weight_decay=1.0, progress=False, **kw)
        params.append(torch.cat([q.detach().flatten() for q in model.parameters()]))
    assert torch.equal(*params)
    toys = []
    for kw in ({}, {"device": "cpu"}):
        torch.manual_seed(0)
        toy = superposition.ToyModel(5, 2, 3, feature_probability=0.1, importance=1.0)
        superposition.train_toy(toy, steps=5, batch_size=32, **kw)
        toys.append(toy.W.detach().clone())
    assert torch.equal(*toys)


@DTYPES
def test_study_tools_follow_the_model_dtype(mlp32, data, dtype):
    x, _ = data
    torch.manual_seed(0)
    toy = superposition.ToyModel(5, 2, 3, feature_probability=0.1, importance=1.0).to(dtype)
    superposition.train_toy(toy, steps=3, batch_size=16)
    assert toy.W.dtype == dtype and superposition.evaluate_loss(toy, n_samples=64).dtype == dtype
    mask32, _ = backdoor.reconstruct_trigger(mlp32, x, 3, steps=5, batch_size=16)
    mask, _ = backdoor.reconstruct_trigger(copy.deepcopy(mlp32).to(dtype), x, 3, steps=5, batch_size=16)
    assert close(mask, mask32, dtype), "Neural Cleanse's mask (optimised in float32) must not depend much on the model's dtype"
    x, y = data
    low = copy.deepcopy(mlp32).to(dtype)
    assert pruning.activation_scores(low, "relu1", x).dtype == dtype
    assert close(pruning.activation_scores(low, "relu1", x), pruning.activation_scores(mlp32, "relu1", x), dtype)
    assert pruning.ablation_scores(low, "relu1", x, y).isfinite().all()
    data_ = grokking.make_data(7, 0.5, 0)
    model32 = models.build("transformer", grokking.model_config(7, 0, d_model=8, n_heads=2, d_mlp=16)).eval()
    model = copy.deepcopy(model32).to(dtype)
    assert grokking.mlp_activations(model, data_).dtype == dtype
    assert grokking.evaluate(model, data_)["train_loss"] == pytest.approx(
        grokking.evaluate(model32, data_)["train_loss"], abs=1e-5 if dtype == torch.float64 else 0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_capture_ablation_and_sae_training_on_cuda_match_the_cpu(mlp32, data):
    x, y = data
    gpu = copy.deepcopy(mlp32).cuda()
    acts_cpu = neurons.get_activations(mlp32, "relu1", x)
    acts_gpu = neurons.get_activations(gpu, "relu1", x)  # inputs on the CPU move to the model
    assert acts_gpu.device.type == "cuda"
    assert torch.allclose(acts_gpu.cpu(), acts_cpu, atol=1e-4)
    means = acts_cpu.mean(0)
    with ablation.ablate(gpu, "relu1", [0, 3], means):  # values on the CPU, model on cuda
        ablated = gpu(x.cuda())
    with ablation.ablate(mlp32, "relu1", [0, 3], means):
        assert torch.allclose(ablated.cpu(), mlp32(x), atol=1e-4)
    drop_gpu = ablation.class_accuracy_drop(gpu, "relu1", x, y, means, neurons=[0, 1])
    drop_cpu = ablation.class_accuracy_drop(mlp32, "relu1", x, y, means, neurons=[0, 1])
    assert torch.allclose(drop_gpu.cpu(), drop_cpu, atol=1 / 16)
    trained = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        made = sae.make_sae("topk", 32, 64, k=8, device=device)
        trained[device], _ = sae.train_sae(made, sae.collect_activations(mlp32, "relu1", x), n_samples=1024,
                                           batch_size=32, device=device)
    assert trained["cuda"].W_dec.device.type == "cuda"
    assert torch.allclose(trained["cuda"].W_dec.detach().cpu(), trained["cpu"].W_dec.detach(), atol=1e-3)
    with sae.splice(gpu, "relu1", trained["cuda"], check_hook=False):
        spliced = gpu(x.cuda())
    with sae.splice(mlp32, "relu1", trained["cpu"], check_hook=False):
        assert torch.allclose(spliced.cpu(), mlp32(x), atol=1e-3)
    model = build_mlp({"sizes": [784, 16, 10]})
    training.train(model, training.minibatches(x, y, 16), steps=3, device="cuda")
    assert next(model.parameters()).device.type == "cuda"
    torch.manual_seed(0)
    toy = superposition.ToyModel(5, 2, 3, feature_probability=0.1, importance=1.0)
    superposition.train_toy(toy, steps=3, batch_size=16, device="cuda")
    assert toy.W.device.type == "cuda" and superposition.evaluate_loss(toy, n_samples=64).device.type == "cuda"
    mask, _ = backdoor.reconstruct_trigger(gpu, x, 3, steps=5, batch_size=16)
    assert torch.allclose(mask.cpu(), backdoor.reconstruct_trigger(mlp32, x, 3, steps=5, batch_size=16)[0], atol=1e-4)


def test_no_tool_hard_codes_the_cpu():
    """`device="cpu"` may appear in a tool only as a default: a parameter's default value, or the fallback
    after `else` for a module that holds no tensor to read a device from."""
    files = sorted(TOOLS.glob("*.py")) + sorted((TOOLS / "studies").glob("*.py"))
    bad = []
    for path in files:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for match in re.finditer(r"""device\s*=\s*(['"])cpu\1""", line):
                default = re.search(r"device\s*:\s*[^=]+=\s*(['\"])cpu\1", line)  # `device: str = "cpu"` in a signature
                fallback = re.search(r"\belse\b", line[:match.start()])  # `... if p is not None else dict(device="cpu")`
                if not (default or fallback):
                    bad.append(f"{path.relative_to(TOOLS.parent)}:{n}: {line.strip()}")
    assert not bad, "tools must run where the model is; take a device argument instead of:\n" + "\n".join(bad)

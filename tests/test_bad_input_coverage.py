"""Issue 27, done when no public glassbox tool returns a result for NaN, empty or wrong-rank input without
saying so. Two property tests already feed bad input to 48 of the tools' public callables (test_bad_input_tools,
test_bad_input_lens); this file feeds it to 46 more and holds a completeness test: every public callable of every
tool module is fed bad input by one of the three property tests, or is EXEMPT here with the reason it
takes no tensor data. A public function added later without either fails `test_every_public_tool_...`.

Cases that fail today (a silent result, or an error from deep inside torch that names no argument) are
marked xfail(strict=True) with what happens now: when a fix lands, the mark must go."""
import importlib
import inspect

import matplotlib.pyplot as plt
import pytest
import test_bad_input_lens  # the two existing property tests: their case names are read, not copied
import test_bad_input_tools
import torch
from torch import nn

from glassbox import ablation, checks, circuits, fourier, lens, lm, neurons, probes, sae, training, viz
from glassbox.studies import models

TOOL_MODULES = ["checks", "hooks", "neurons", "probes", "attribution", "ablation", "lens", "circuits", "sae",
                "training", "lm", "fourier", "viz"]
NAN = float("nan")
KINDS = ["nan", "empty", "one rank less", "one rank more"]
CONFIG = {"n_layers": 2, "n_heads": 2, "d_model": 16, "d_head": 8, "d_mlp": 32, "d_vocab": 11, "n_ctx": 12}

# ---- what the two existing property tests cover --------------------------------------------------------

LENS_CASE_FUNCTIONS = {  # test_bad_input_lens's case ids -> the tool function each feeds bad input to
    "unembed": "lens.unembed", "dla components": "lens.direct_logit_attribution",
    "dla targets": "lens.direct_logit_attribution", "previous_token_score": "lens.previous_token_score",
    "current_token_score": "lens.current_token_score", "first_token_score": "lens.first_token_score",
    "mean_attention_distance": "lens.mean_attention_distance", "induction_targets": "lens.induction_targets",
    "prefix pattern": "lens.prefix_matching_score", "prefix tokens": "lens.prefix_matching_score",
    "composition_score": "lens.composition_score", "per_token_loss logits": "lens.per_token_loss",
    "per_token_loss tokens": "lens.per_token_loss", "copy_losses": "lens.copy_losses",
    "classify_heads": "lens.classify_heads", "head_scores": "lens.head_scores", "path_patch clean": "lens.path_patch_logits",
    "windows": "lm.windows", "next_token_loss": "lm.next_token_loss", "evaluate_loss": "lm.evaluate_loss",
    "sample": "lm.sample", "ngram_loss": "lm.ngram_loss", "repeated_span_losses": "lm.repeated_span_losses",
    "hooks.patch": "hooks.patch", "attention_entropy": "circuits.get_attention_entropy",
    "set_pattern_hooks": "circuits.set_pattern_hooks", "last_query_pattern": "circuits.last_query_pattern",
    "ablate_hooks": "circuits.ablate_hooks", "get_logit_components": "circuits.get_logit_components",
    # the journal's studies (glassbox.studies.find_median), not tools: counted nowhere here
    "fit_tent": None, "get_local_slopes": None, "AveragingModel": None, "make_flip_pairs": None, "tent_rows": None,
    "logit_fit": None,
}

MODEL_ONLY = ("takes a model (and ints) only, no tensor data: a model that is not a TransformerLens model is refused in "
              "test_model_only_tools_refuse_a_model_that_is_not_a_transformer_lens_model (here), layers and heads by "
              "checks.index (test_bad_input_lens::test_out_of_range_layers_and_heads_are_refused)")
INTS = "takes ints only (sizes, p, frequencies): refused by checks.count / checks.index"
EXEMPT = {  # public callables that take no tensor data, with the reason
    "checks.transformer_lens_model": "takes a model only: tested in test_bad_input_lens::test_lens_refuses_a_model_that_is_not_a_transformer_lens_model",
    "checks.placement": "takes a model only (the device and dtype of its first floating parameter)",
    "checks.index": "takes an int, not a tensor (a layer, a head): its refusals are tested through lens and circuits",
    "checks.count": "takes an int, not a tensor (a size): its refusals are tested through lens, lm and sae",
    "hooks.get_module": "takes a model and a module name only; a non-Module is refused (test_capture_and_patch_refuse_...)",
    "hooks.capture": "takes a model and module names only: the data is the model's own forward pass (a non-tensor "
                     "output refused in test_capture_and_patch_refuse_a_module_whose_output_is_not_a_tensor)",
    "hooks.Captured": "a read-only view that capture builds; users never construct it from data",
    "probes.Probe": "a dataclass (a fitted probe's accuracy, chance and pipeline)",
    "probes.pooled": "takes the dict of floats within_class_probes returns, not a tensor",
    "attribution.randomize_weights": "takes a model only (re-initialises a copy of its weights)",
    "lens.component_layers": "takes a list of labels (str): refused in test_component_layers_refuses_labels_...",
    "lens.logit_bias": MODEL_ONLY, "lens.copying_score": MODEL_ONLY, "lens.W_OV": MODEL_ONLY, "lens.W_QK": MODEL_ONLY,
    "lens.composition_scores": MODEL_ONLY, "lens.random_composition_scores": MODEL_ONLY,
    "lens.composition_baseline": MODEL_ONLY, "lens.repeated_tokens": INTS,
    "circuits.get_W_pos": MODEL_ONLY, "circuits.get_ln1_outputs": MODEL_ONLY, "circuits.get_W_U_eff": MODEL_ONLY,
    "circuits.get_ov_table": MODEL_ONLY, "circuits.get_attn_scale": MODEL_ONLY, "circuits.get_qk_table": MODEL_ONLY,
    "circuits.uniform_causal_pattern": INTS,
    "sae.sampled_batches": "takes a sampling function, not a tensor: what it draws is checked batch by batch by "
                           "train_sae (test_bad_input_tools::test_evaluate_and_train_refuse_nan_activations)",
    "sae.make_sae": INTS + " (test_make_sae_refuses_k_above_d_sae_and_no_latents)",
    "sae.to_inference": "takes an SAE only (a TrainingSAE to its inference class)",
    "sae.ablate_latents": "takes indices, not data: floats (so NaN) refused, a bool mask read "
                          "(test_bad_input_tools::test_clamp_latent_refuses_nan_and_ablate_latents_refuses_floats)",
    "sae.clamp_latent": "takes an index and a number: NaN refused (test_clamp_latent_refuses_nan_and_ablate_latents_...)",
    "sae.splice": "takes a model, a module name and an SAE: no tensor; a width mismatch is refused "
                  "(test_bad_input_tools::test_splice_refuses_an_sae_of_another_width)",
    "sae.loss_recovered": "takes three floats (losses), not a tensor: NaN is fed to it in test_loss_recovered_refuses_nan",
    "training.set_seed": "takes an int",
    "training.History": "a dataclass (logged records and seconds)",
    "training.to_device": "moves a batch's tensors to a device: reads no values, so NaN, empty or any rank moves as it is",
    "training.model_device": "reads where a model (or, without parameters, its input x) is: x's device, never its values",
    "lm.periodic_batches": INTS + " (test_lm_generators_refuse_bad_arguments_when_called_not_when_first_drawn)",
    "lm.repeated_word_spans": "takes a str (text) and ints",
    "fourier.n_frequencies": INTS, "fourier.basis": INTS, "fourier.names": INTS, "fourier.row_frequency": INTS,
    "fourier.sum_directions": INTS, "fourier.cos_logit_table": INTS,
    "viz.show": "takes a plotly figure, not a tensor",
    "viz.circuitsvis_bundle": "takes nothing (reads circuitsvis's JavaScript bundle)",
    "viz.circuitsvis_html": "takes a circuitsvis view (rendered props), not a tensor: the data went to circuitsvis",
    "viz.show_circuitsvis": "takes a circuitsvis view (rendered props), not a tensor: the data went to circuitsvis",
    "viz.NeuronGraph": "a dataclass that get_neuron_graph builds (covered here through get_neuron_graph)",
}


def public_tools() -> list[str]:
    """'module.name' of every public callable defined in a tool module."""
    found = []
    for name in TOOL_MODULES:
        module = importlib.import_module(f"glassbox.{name}")
        found += [f"{name}.{attr}" for attr, value in vars(module).items()
                  if not attr.startswith("_") and callable(value) and getattr(value, "__module__", None) == module.__name__
                  and (inspect.isfunction(value) or inspect.isclass(value))]
    return found


def covered_elsewhere() -> set[str]:
    tools = {n for n in test_bad_input_tools.CASE_NAMES if n.split(".")[0] in TOOL_MODULES}
    return tools | {f for f in LENS_CASE_FUNCTIONS.values() if f}


# ---- fixtures and the cases ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ctx():
    torch.manual_seed(0)
    mlp = models.build_mlp({"sizes": [784, 8, 6, 10]}).eval()
    relu2_sae = sae.to_inference(sae.make_sae("topk", 6, 12, k=2, model_name="mlp", hook_name="relu2"))
    bridge = models.build_transformer(CONFIG).eval()
    tokens = torch.randint(0, 11, (3, 10))
    _, cache = bridge.run_with_cache(tokens)
    median = models.build_attn_only_transformer({}).eval()  # 1 layer, 1 head, d_vocab 50, n_ctx 7
    return {"mlp": mlp, "sae": relu2_sae, "bridge": bridge, "tokens": tokens, "cache": dict(cache.items()), "median": median,
            "lists": torch.randint(0, 50, (4, 7)), "seq": torch.arange(60) % 11, "y": torch.tensor([0, 1, 2, 0, 1, 2])}


def _cases(c: dict) -> dict:
    """name: (call(x), a valid x, the argument's name, the kinds that apply). A tool that reads a model's
    input `x` leaves its rank to the model (as in test_bad_input_tools): kinds "nan empty" only."""
    mlp, relu2_sae, bridge, tokens, cache, y = c["mlp"], c["sae"], c["bridge"], c["tokens"], c["cache"], c["y"]
    x = torch.rand(6, 784)
    means = lens.mean_z(cache, 2)
    ys = lambda t: y[:len(t) if t.ndim else 1]  # one label per row of the bad input (one for a 0-d input)
    ALL, MODEL_X = KINDS, ["nan", "empty"]
    return {
        "checks.tensor": (lambda t: checks.tensor(t, "acts", ndim=2), torch.rand(6, 3), "acts", ALL),
        "checks.tokens": (lambda t: checks.tokens(t, "tokens", d_vocab=11), tokens, "tokens", ALL),
        "checks.labels": (lambda t: checks.labels(t, "labels", 3), y, "labels", ALL),
        "checks.indices": (lambda t: checks.indices(t, "neurons", 8), torch.tensor([2, 5]), "neurons", ALL),
        "neurons.per_neuron": (neurons.per_neuron, torch.rand(6, 3), "acts", ALL),
        "probes.get_features": (lambda t: probes.get_features(mlp, ["relu1"], t), x, "x", MODEL_X),
        "probes.probe_accuracies": (lambda t: probes.probe_accuracies({"f": t}, {"f": torch.rand(6, 3)}, {"y": ys(t) % 2},
                                                                      {"y": y % 2}), torch.rand(6, 3), "features_train", ALL),
        "probes.within_class_probes": (lambda t: probes.within_class_probes(
            t, torch.arange(len(t)) % 2, torch.zeros(len(t), dtype=torch.long), torch.rand(6, 3), torch.arange(6) % 2,
            torch.zeros(6, dtype=torch.long)), torch.rand(6, 3), "features_train", ALL),
        "ablation.ablate_in_weights": (lambda t: ablation.ablate_in_weights(mlp, "relu1", [0], t, reader="fc2")(x),
                                       torch.rand(8), "values", ALL),
        "lens.accumulated_resid": (lambda t: lens.accumulated_resid(t, 2)[0], cache, "cache", ALL),
        "lens.logit_lens": (lambda t: lens.logit_lens(bridge, t), cache, "cache", ALL),
        "lens.head_outputs": (lambda t: lens.head_outputs(bridge, t, 1), cache, "cache", ALL),
        "lens.residual_components": (lambda t: lens.residual_components(bridge, t)[0], cache, "cache", ALL),
        "lens.mean_z": (lambda t: lens.mean_z(t, 2)[0], cache, "cache", ALL),
        "lens.head_ablation_hooks": (lambda t: bridge.run_with_hooks(tokens, fwd_hooks=lens.head_ablation_hooks(
            [(0, 1)], {0: t, 1: means[1]})), means[0], "means[0]", ALL),
        "circuits.mean_by_token": (lambda t: circuits.mean_by_token(t, tokens, 11), torch.rand(3, 10), "values", ALL),
        "circuits.predict_last": (lambda t: circuits.predict_last(c["median"], t), c["lists"], "tokens", ALL),
        "circuits.patch_by_position": (lambda t: circuits.patch_by_position(
            bridge, t, cache, ["blocks.0.hook_resid_pre"], lambda lg: lg[:, -1, 0].mean()), tokens, "corrupt", ALL),
        "sae.collect_activations": (lambda t: sae.collect_activations(mlp, "relu2", t), x, "inputs", MODEL_X),
        "sae.activation_batches": (lambda t: next(sae.activation_batches(t, 2)), torch.rand(6, 6), "acts", ALL),
        "sae.decoder_logit_effects": (lambda t: sae.decoder_logit_effects(mlp, "relu2", relu2_sae, x, t),
                                      torch.rand(12), "scales", ALL),
        "sae.outputs": (lambda t: sae.outputs(mlp, t), x, "x", MODEL_X),
        "sae.spliced_accuracy": (lambda t: sae.spliced_accuracy(mlp, "relu2", relu2_sae, t, ys(t)), x, "x", MODEL_X),
        "sae.latent_intervention": (lambda t: sae.latent_intervention(mlp, "relu2", relu2_sae, 0, 1, t, ys(t), value=1.0,
                                                                      n_classes=10), x, "x", MODEL_X),
        "sae.neuron_logit_effects": (lambda t: sae.neuron_logit_effects(mlp, "relu2", x, t), torch.rand(6), "scales", ALL),
        "sae.neuron_intervention": (lambda t: sae.neuron_intervention(mlp, "relu2", 0, 1, t, ys(t), value=1.0, n_classes=10),
                                    x, "x", MODEL_X),
        "sae.switch_off_drops": (lambda t: sae.switch_off_drops(mlp, "relu2", None, torch.tensor([0, 1]), t, ys(t), 10),
                                 x, "x", MODEL_X),
        "sae.lm_activation_batches": (lambda t: next(sae.lm_activation_batches(bridge, t, "blocks.0.hook_resid_post",
                                                                               batch_size=4, n_ctx=8)), c["seq"], "tokens", ALL),
        "sae.lm_activations": (lambda t: sae.lm_activations(bridge, t, "blocks.0.hook_resid_post", 8), c["seq"], "tokens", ALL),
        "sae.lm_sae_hook": (lambda t: sae.lm_sae_hook(relu2_sae)(t), torch.rand(2, 3, 6), "act", ALL),
        "sae.zero_ablation_hook": (sae.zero_ablation_hook, torch.rand(2, 3, 6), "act", ALL),
        "sae.lm_loss": (lambda t: sae.lm_loss(bridge, t), tokens, "windows", ALL),
        "training.minibatches": (lambda t: next(training.minibatches(t, ys(t), 2)), torch.rand(6, 3), "x", MODEL_X),
        "training.train": (lambda t: training.train(nn.Linear(3, 3), iter([(t, ys(t))] * 2), steps=2).records[-1]["loss"],
                           torch.rand(6, 3), "batches", MODEL_X),
        "training.predict": (lambda t: training.predict(mlp, t), x, "x", MODEL_X),
        "training.accuracy": (lambda t: training.accuracy(mlp, t, ys(t)), x, "x", MODEL_X),
        "training.per_class_accuracy": (lambda t: training.per_class_accuracy(t, ys(t)), torch.rand(6, 10), "logits", ALL),
        "lm.random_windows": (lambda t: lm.random_windows(t, 2, 5), c["seq"], "tokens", ALL),
        "fourier.embedding_frequency_norms": (fourier.embedding_frequency_norms, torch.rand(5, 3), "W_E", ALL),
        "fourier.project_sum_frequencies": (lambda t: fourier.project_sum_frequencies(t, 3, [1]), torch.rand(9, 3), "table", ALL),
        "viz.image_grid": (lambda t: _closed(viz.image_grid(t)), torch.rand(4, 28, 28), "images", ALL),
        "viz.neuron_dashboard": (lambda t: _closed(viz.neuron_dashboard(mlp, "relu1", 0, t, ys(t))), x, "x", MODEL_X),
        "viz.get_neuron_graph": (lambda t: viz.get_neuron_graph(mlp, t).activations[-1], x[:1], "x", ALL),
        "viz.neuron_graph": (lambda t: viz.neuron_graph(mlp, t).to_json(), x[:1], "x", ALL),
        "viz.feature_dashboard": (lambda t: viz.feature_dashboard(t, torch.rand(10), ys(t)), torch.rand(6), "acts", ALL),
        "viz.top_inputs_table": (lambda t: viz.top_inputs_table(c["lists"][:len(t)] if t.ndim else c["lists"], t),
                                 torch.rand(4), "acts", ALL),
    }


def _closed(fig):
    plt.close(fig)
    return fig


CASE_NAMES = ["checks.tensor", "checks.tokens", "checks.labels", "checks.indices", "neurons.per_neuron",
              "probes.get_features", "probes.probe_accuracies", "probes.within_class_probes", "ablation.ablate_in_weights",
              "lens.accumulated_resid", "lens.logit_lens", "lens.head_outputs", "lens.residual_components", "lens.mean_z",
              "lens.head_ablation_hooks", "circuits.mean_by_token", "circuits.predict_last", "circuits.patch_by_position",
              "sae.collect_activations", "sae.activation_batches", "sae.decoder_logit_effects", "sae.outputs",
              "sae.spliced_accuracy", "sae.latent_intervention", "sae.neuron_logit_effects", "sae.neuron_intervention",
              "sae.switch_off_drops", "sae.lm_activation_batches", "sae.lm_activations", "sae.lm_sae_hook",
              "sae.zero_ablation_hook", "sae.lm_loss", "training.minibatches", "training.train", "training.predict",
              "training.accuracy", "training.per_class_accuracy", "lm.random_windows", "fourier.embedding_frequency_norms",
              "fourier.project_sum_frequencies", "viz.image_grid", "viz.neuron_dashboard", "viz.get_neuron_graph",
              "viz.neuron_graph", "viz.feature_dashboard", "viz.top_inputs_table"]

def _same(expected):
    """A check that the result on the bad input equals `expected(want)`, from the valid input's result."""
    def check(want, got):
        torch.testing.assert_close(got, expected(want))
        return True
    return check


CORRECT = {  # (name, kind): where that input is valid for the tool, a check of its result against the valid x's
    ("checks.indices", "empty"): _same(lambda want: want[:0]),  # no neurons: a valid choice (ablating none)
    ("checks.indices", "one rank less"): _same(lambda want: want[:1]),  # one 0-d index: that neuron
    ("checks.indices", "one rank more"): _same(lambda want: want),  # indices are read flat: the same neurons
    ("neurons.per_neuron", "one rank more"): _same(lambda want: want.mean(-1)[None]),  # (1, 6, 3): 6 channels, 3 places
    ("lens.accumulated_resid", "one rank less"): _same(lambda want: want[:, 0]),  # each cached tensor one sequence
    ("lens.accumulated_resid", "one rank more"): _same(lambda want: want[:, None]),
    ("lens.logit_lens", "one rank less"): _same(lambda want: want[:, 0]),
    ("lens.logit_lens", "one rank more"): _same(lambda want: want[:, None]),
    ("sae.lm_sae_hook", "empty"): _same(lambda want: want[:0]),  # no activations in, none out
    ("sae.lm_sae_hook", "one rank less"): _same(lambda want: want[0]),  # a hook's activation: (pos, d), (batch, pos, d), ...
    ("sae.lm_sae_hook", "one rank more"): _same(lambda want: want[None]),
    ("sae.zero_ablation_hook", "nan"): _same(lambda want: want),  # zero ablation ignores the values it replaces
    ("sae.zero_ablation_hook", "empty"): _same(lambda want: want[:0]),
    ("sae.zero_ablation_hook", "one rank less"): _same(lambda want: want[0]),
    ("sae.zero_ablation_hook", "one rank more"): _same(lambda want: want[None]),
    ("viz.get_neuron_graph", "one rank more"): _same(lambda want: want),  # (1, 1, 784): the MLP reads it as one input
    ("viz.neuron_graph", "one rank more"): lambda want, got: got == want,  # the same figure (as JSON)
    ("viz.top_inputs_table", "empty"): lambda want, got: len(got) == 0 and list(got.columns) == list(want.columns),
}

XFAIL = {  # (name, kind): what happens now (issue 27); the fix each needs is in the commit message that added this file
}


def _bad(x, kind: str):
    if isinstance(x, dict):  # a cache: every tensor in it made bad alike
        return {k: _bad(v, kind) for k, v in x.items()}
    if kind == "nan":
        x = x.clone().float() if not x.is_floating_point() else x.clone()
        x.view(-1)[0] = NAN
        return x
    return {"empty": x[:0], "one rank less": x[0], "one rank more": x[None]}[kind]


def _params():
    for name in CASE_NAMES:
        for kind in KINDS:
            reason = XFAIL.get((name, kind))
            marks = [pytest.mark.xfail(strict=True, reason=f"issue 27: {reason}")] if reason else []
            yield pytest.param(name, kind, marks=marks, id=f"{name}-{kind}")


@pytest.mark.parametrize("name, kind", list(_params()))
def test_nan_empty_and_wrong_rank_input_to_the_remaining_tools_is_refused_by_name(ctx, name, kind):
    call, good, argument, kinds = _cases(ctx)[name]
    if kind not in kinds:
        pytest.skip(f"{name}: {argument}'s rank is the model's to judge (it goes into the model as it is)")
    want = call(good)  # the valid input works
    if (name, kind) in CORRECT:
        assert CORRECT[name, kind](want, call(_bad(good, kind))), f"{name} on {kind} input must give the correct result"
        return
    with pytest.raises((ValueError, TypeError)) as err:
        call(_bad(good, kind))
    assert argument in str(err.value), f"{name} on {kind} input: the error must name {argument!r}, got: {err.value}"


# ---- completeness ---------------------------------------------------------------------------------------

def test_every_public_tool_is_fed_bad_input_or_exempt_with_a_reason():
    tools = public_tools()
    mine = set(CASE_NAMES)
    elsewhere = covered_elsewhere()
    missing = [t for t in tools if t not in mine | elsewhere | set(EXEMPT)]
    assert not missing, (f"public tools that no property test feeds NaN, empty or wrong-rank input: {missing}; add a case "
                         "to a property test (here, test_bad_input_tools or test_bad_input_lens) or, if it takes no "
                         "tensor data, an EXEMPT entry with the reason")
    stale = sorted((mine | set(EXEMPT) | elsewhere) - set(tools))
    assert not stale, f"cases or exemptions for tools that no longer exist (renamed?): {stale}"
    both = sorted(set(EXEMPT) & (mine | elsewhere))
    assert not both, f"exempt but also fed bad input (drop the exemption): {both}"
    assert not mine & elsewhere, f"cases here that another property test already holds: {sorted(mine & elsewhere)}"
    assert all(isinstance(r, str) and r.strip() for r in EXEMPT.values())


def test_the_lens_case_map_matches_the_lens_property_test():
    ids = [case[0] for case in test_bad_input_lens.CASES]
    unknown = sorted(set(LENS_CASE_FUNCTIONS) - set(ids))
    assert not unknown, f"LENS_CASE_FUNCTIONS names cases test_bad_input_lens no longer has: {unknown}"


def test_the_case_list_matches_the_cases(ctx):
    assert sorted(CASE_NAMES) == sorted(_cases(ctx))


# ---- the exempt tools that take a model only, and the one that takes floats -------------------------------

MODEL_ONLY_CALLS = {
    "lens.logit_bias": lambda m: lens.logit_bias(m), "lens.copying_score": lambda m: lens.copying_score(m, 0, 0),
    "lens.W_OV": lambda m: lens.W_OV(m, 0), "lens.W_QK": lambda m: lens.W_QK(m, 0),
    "lens.composition_scores": lambda m: lens.composition_scores(m, "k"),
    "lens.random_composition_scores": lambda m: lens.random_composition_scores(m),
    "lens.composition_baseline": lambda m: lens.composition_baseline(m), "circuits.get_W_pos": circuits.get_W_pos,
    "circuits.get_ln1_outputs": circuits.get_ln1_outputs, "circuits.get_W_U_eff": circuits.get_W_U_eff,
    "circuits.get_ov_table": circuits.get_ov_table, "circuits.get_attn_scale": circuits.get_attn_scale,
    "circuits.get_qk_table": circuits.get_qk_table,
}
MODEL_XFAIL: dict[str, str] = {}  # none left (issue 27)


def test_every_model_only_exemption_is_checked():
    assert sorted(MODEL_ONLY_CALLS) == sorted(k for k, v in EXEMPT.items() if v == MODEL_ONLY)


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.xfail(strict=True, reason=f"issue 27: {MODEL_XFAIL[n]}")]
                                               if n in MODEL_XFAIL else []) for n in MODEL_ONLY_CALLS])
def test_model_only_tools_refuse_a_model_that_is_not_a_transformer_lens_model(name):
    with pytest.raises(TypeError, match="TransformerLens model.*Sequential"):
        MODEL_ONLY_CALLS[name](nn.Sequential(nn.Linear(3, 3)))


def test_loss_recovered_refuses_nan():
    assert sae.loss_recovered(2.0, 2.5, 4.0) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="clean"):
        sae.loss_recovered(NAN, 1.0, 2.0)

"""glassbox's hook-based tools on models glassbox did not build (issue 24): nn.Sequential by int names,
modules returning tuples, dicts and namedtuples, nn.MultiheadAttention, nn.LSTM and a Hugging Face GPT-2
built offline from its config with random weights. Captured values are checked against the same
numbers computed by hand (calling the module, or the model's own output_hidden_states)."""
from collections import namedtuple

import pytest
import torch
from torch import nn

from glassbox import ablation, hooks, neurons, probes, sae

TOL = dict(rtol=1e-5, atol=1e-6)


def seq() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


class Stack(nn.Module):
    """A ModuleList of blocks, reached by dotted names like "layers.0.mlp"."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.ModuleDict({"mlp": nn.Linear(4, 4)}) for _ in range(2))

    def forward(self, x):
        for layer in self.layers:
            x = x + torch.tanh(layer["mlp"](x))
        return x


class DictBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 5)

    def forward(self, x):
        hidden = torch.relu(self.fc(x))
        return {"hidden": hidden, "norm": hidden.norm(dim=-1), "note": "not a tensor"}


class DictModel(nn.Module):
    """A block returning a dict, read by a head that uses two of its entries."""

    def __init__(self):
        super().__init__()
        self.block, self.head = DictBlock(), nn.Linear(5, 3)

    def forward(self, x):
        out = self.block(x)
        return self.head(out["hidden"]) + out["norm"][:, None]


Pair = namedtuple("Pair", ["small", "big"])


class Split(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        h = self.fc(x)
        return Pair(h.clamp(max=0), h.clamp(min=0))


class AttentionModel(nn.Module):
    """Self-attention with nn.MultiheadAttention, then a linear read-out of the last position."""

    def __init__(self, d=8, heads=2):
        super().__init__()
        self.embed, self.attn, self.out = nn.Linear(3, d), nn.MultiheadAttention(d, heads, batch_first=True), nn.Linear(d, 4)

    def forward(self, x):
        h = self.embed(x)
        a, _ = self.attn(h, h, h)
        return self.out((h + a)[:, -1])


class LSTMModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm, self.head = nn.LSTM(3, 6, batch_first=True), nn.Linear(6, 4)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


class TupleModel(nn.Module):
    """A block returning a namedtuple of two tensors, both read."""

    def __init__(self):
        super().__init__()
        self.split = Split()

    def forward(self, x):
        pair = self.split(x)
        return pair.small + pair.big


def tuple_model() -> nn.Module:
    torch.manual_seed(0)
    return TupleModel()


# ---- int names and dotted paths ------------------------------------------------------------------------

def test_sequential_children_are_named_by_int_or_by_string():
    model, x = seq(), torch.randn(5, 3)
    with hooks.capture(model, [1]) as by_int, hooks.capture(model, "1") as by_str, hooks.capture(model, 2) as one:
        model(x)
    expected = torch.relu(model[0](x))
    assert torch.equal(by_int[1], expected) and torch.equal(by_int["1"], expected), "acts[1] and acts['1'] are one entry"
    assert list(by_int) == ["1"], "captured values are keyed by the module's string name"
    assert torch.equal(by_str["1"], expected) and torch.equal(one[2], model(x))
    assert hooks.get_module(model, 1) is model[1]
    with hooks.patch(model, {1: lambda a: a * 0}):
        assert torch.equal(model(x), model[2].bias.expand(5, 2)), "an int key patches that child"
    assert torch.equal(neurons.get_activations(model, 0, x), model[0](x).detach())
    with pytest.raises(ValueError, match="named twice"):
        with hooks.capture(model, [1, "1"]):
            pass
    with pytest.raises(TypeError, match="module names are strings"):
        hooks.get_module(model, True)
    with pytest.raises(KeyError, match="Sequential has no module '7'; its modules are: 0, 1, 2"):
        hooks.get_module(model, 7)


def test_dotted_paths_reach_into_a_module_list():
    torch.manual_seed(0)
    model, x = Stack(), torch.randn(2, 4)
    with hooks.capture(model, ["layers.0.mlp", "layers.1.mlp"]) as acts:
        out = model(x)
    h1 = x + torch.tanh(model.layers[0]["mlp"](x))
    torch.testing.assert_close(acts["layers.0.mlp"], model.layers[0]["mlp"](x).detach(), **TOL)
    torch.testing.assert_close(out, h1 + torch.tanh(acts["layers.1.mlp"]), **TOL)


# ---- tuples, dicts, namedtuples ------------------------------------------------------------------------

def test_a_dict_output_gives_its_first_tensor_or_the_named_entry_and_patches_pass_the_rest_through():
    torch.manual_seed(0)
    model, x = DictModel(), torch.randn(4, 3)
    hidden = torch.relu(model.block.fc(x)).detach()
    with hooks.capture(model, ["block", "block[hidden]", "block[norm]", "block[1]"]) as acts:
        clean = model(x)
    assert torch.equal(acts["block"], hidden), "the default is the first tensor, the 'hidden' entry"
    assert torch.equal(acts["block[hidden]"], hidden) and torch.equal(acts["block[norm]"], hidden.norm(dim=-1))
    assert torch.equal(acts["block[1]"], acts["block[norm]"]), "[i] on a dict is its i-th entry"
    with hooks.patch(model, {"block[hidden]": torch.zeros(5)}):
        zeroed = model(x)
    torch.testing.assert_close(zeroed, model.head.bias + hidden.norm(dim=-1)[:, None], **TOL,
                               msg=lambda m: f"only 'hidden' may change; 'norm' must pass through\n{m}")
    seen = {}
    with hooks.patch(model, {"block": lambda h: h}):
        model.block.register_forward_hook(lambda m, i, o: seen.update(o))  # runs after the patch
        assert torch.equal(model(x), clean), "patching with itself must leave the outputs equal"
    assert seen["note"] == "not a tensor" and set(seen) == {"hidden", "norm", "note"}


def test_a_namedtuple_output_is_selected_by_index_or_field_name():
    model, x = tuple_model(), torch.randn(3, 3)
    h = model.split.fc(x).detach()
    with hooks.capture(model, ["split", "split[big]", "split[1]"]) as acts:
        model(x)
    assert torch.equal(acts["split"], h.clamp(max=0)) and torch.equal(acts["split[big]"], h.clamp(min=0))
    assert torch.equal(acts["split[1]"], acts["split[big]"])
    out = []
    model.split.register_forward_hook(lambda m, i, o: out.append(o))
    with hooks.patch(model, {"split[big]": lambda a: a * 0}):
        assert torch.equal(model(x), h.clamp(max=0))
    assert isinstance(out[0], Pair), "the patched output keeps its namedtuple type"


def test_a_selection_that_does_not_fit_the_output_says_what_the_output_is():
    torch.manual_seed(0)
    model, x = DictModel(), torch.randn(2, 3)
    cases = [("block[nope]", KeyError, r"'block\[nope\]': no entry \[nope\] at the top; its keys are \['hidden', 'norm', 'note'\]"),
             ("block[5]", IndexError, r"\[5\] is out of range for the 3 entries"),
             ("block[note]", TypeError, r"selects a str, not a tensor, from the output of its module, "
                                        r"dict\{hidden: Tensor\(2, 5\), norm: Tensor\(2,\), note: str\}"),
             ("head[0]", TypeError, r"the output at the top is a tensor, which has no element \[0\]"),
             ("block[hidden][0]", TypeError, r"the output at \[hidden\] is a tensor")]
    for name, error, message in cases:
        with pytest.raises(error, match=message):
            with hooks.capture(model, name):
                model(x)
        assert not any(m._forward_hooks for m in model.modules()), f"{name}: a hook was left behind"
    with pytest.raises(KeyError, match=r"'block\[hidden\]' selects an element of the output of module 'block'; "
                                       "get_module takes the module name, 'block'"):
        hooks.get_module(model, "block[hidden]")
    with pytest.raises(KeyError, match=r"DictModel has no module 'blok\[hidden\]'; its modules are: block, block.fc, head"):
        with hooks.capture(model, "blok[hidden]"):
            pass
    with pytest.raises(KeyError, match="selects an element of the output of module 'block'"):  # it folds into weights
        ablation.ablate_in_weights(model, "block[hidden]", [0], reader="head")


# ---- nn.MultiheadAttention -----------------------------------------------------------------------------

def test_multihead_attention_gives_attn_output_by_default_and_its_weights_by_index():
    torch.manual_seed(0)
    model, x = AttentionModel().eval(), torch.randn(2, 5, 3)
    with hooks.capture(model, ["embed", "attn", "attn[0]", "attn[1]"]) as acts:
        model(x)
    h = acts["embed"]
    a, w = model.attn(h, h, h)
    torch.testing.assert_close(acts["attn"], a, **TOL, msg=lambda m: f"'attn' must be attn_output\n{m}")
    assert torch.equal(acts["attn"], acts["attn[0]"])
    torch.testing.assert_close(acts["attn[1]"], w, **TOL)
    torch.testing.assert_close(acts["attn[1]"].sum(-1), torch.ones(2, 5), **TOL, msg="the weights are a softmax")


def test_patching_multihead_attention_changes_the_logits_as_a_manual_forward_does():
    torch.manual_seed(0)
    model, x = AttentionModel().eval(), torch.randn(2, 5, 3)
    clean = model(x)
    with hooks.patch(model, {"attn": lambda a: a}):
        torch.testing.assert_close(model(x), clean, **TOL)
    with hooks.patch(model, {"attn": lambda a: torch.zeros_like(a)}):
        zeroed = model(x)
    torch.testing.assert_close(zeroed, model.out(model.embed(x)[:, -1]), **TOL,
                               msg=lambda m: f"zeroing attn_output leaves the residual only\n{m}")
    assert not torch.allclose(zeroed, clean)
    acts = neurons.get_activations(model, "attn", x)
    assert acts.shape == (2, 5, 8) and not acts.requires_grad


# ---- nn.LSTM -------------------------------------------------------------------------------------------

def test_lstm_gives_its_output_by_default_and_h_n_by_a_nested_index():
    torch.manual_seed(0)
    model, x = LSTMModel().eval(), torch.randn(3, 7, 3)
    with hooks.capture(model, ["lstm", "lstm[1][0]", "lstm[1][1]"]) as acts:
        logits = model(x)
    out, (h_n, c_n) = model.lstm(x)
    assert torch.equal(acts["lstm"], out.detach()) and torch.equal(acts["lstm[1][0]"], h_n.detach())
    assert torch.equal(acts["lstm[1][1]"], c_n.detach())
    torch.testing.assert_close(acts["lstm[1][0]"][-1], acts["lstm"][:, -1], **TOL, msg="h_n is the last step's output")
    with hooks.patch(model, {"lstm": lambda o: o * 0}):
        assert torch.equal(model(x), model.head.bias.expand(3, 4))
    with hooks.patch(model, {"lstm[1][0]": lambda h: h * 0}):
        assert torch.equal(model(x), logits), "this model reads the output, not h_n: patching h_n changes nothing"


def test_two_passes_join_along_the_batch_dim_the_caller_names_and_a_wrong_join_is_refused():
    torch.manual_seed(0)
    model, x = LSTMModel().eval(), torch.randn(5, 7, 3)
    with hooks.capture(model, ["lstm", "lstm[1][0]"], batch_dim={"lstm[1][0]": 1}) as acts:
        model(x[:3])
        model(x[3:])
    out, (h_n, _) = model.lstm(x)
    torch.testing.assert_close(acts["lstm"], out.detach(), **TOL, msg="the output (batch first) joins along dim 0")
    torch.testing.assert_close(acts["lstm[1][0]"], h_n.detach(), **TOL, msg="h_n (layers, batch, hidden) joins along dim 1")
    with hooks.capture(model, "lstm[1][0]") as wrong:  # the default dim 0 is the layers here, not the examples
        model(x[:3])
        model(x[3:])
    with pytest.raises(ValueError, match="batch_dim"):
        wrong["lstm[1][0]"]
    with hooks.capture(model, "lstm") as acts:
        model(x[:3])
        model(x[3:, :4])  # another sequence length: the two passes cannot be joined along dim 0
    with pytest.raises(ValueError, match="batch_dim"):
        acts["lstm"]
    with pytest.raises(ValueError, match="not captured"), hooks.capture(model, "lstm", batch_dim={"lstm[1][0]": 1}):
        pass
    with pytest.raises(TypeError, match="must be an int"), hooks.capture(model, "lstm", batch_dim={"lstm": "1"}):
        pass


def test_predict_reads_the_logits_of_a_model_output_and_the_first_item_of_a_tuple(gpt2):
    from glassbox import training

    model, tokens, out = gpt2
    torch.testing.assert_close(training.predict(model, tokens, batch_size=2), out.logits, **TOL)
    torch.manual_seed(0)
    lstm, x = LSTMModel().eval(), torch.randn(4, 7, 3)
    torch.testing.assert_close(training.predict(lstm.lstm, x, batch_size=3), lstm.lstm(x)[0].detach(), **TOL)
    with pytest.raises(TypeError, match="returns the prediction"):
        training.predict(DictBlock(), torch.randn(2, 3))  # a dict without 'logits'


def test_tools_built_on_hooks_work_through_the_selection_on_an_lstm():
    torch.manual_seed(0)
    model, x, y = LSTMModel().eval(), torch.randn(40, 7, 3), torch.randint(0, 4, (40,))
    acts = neurons.get_activations(model, "lstm", x, batch_size=16)
    torch.testing.assert_close(acts, model.lstm(x)[0].detach(), **TOL, msg="batches joined along dim 0")
    feats = probes.get_features(model, ["lstm", "head"], x)
    assert feats["lstm"].shape == (40, 42) and feats["head"].shape == (40, 4)
    last = acts[:, -1]
    with ablation.ablate(model, "lstm", [6]):  # dim 1 of a (batch, pos, d) output is the position
        torch.testing.assert_close(model(x), model.head.bias.expand(40, 4), **TOL)
    drop = ablation.class_accuracy_drop(model, "head", x, y)
    assert drop.shape == (4, 4)
    one = sae.make_sae("standard", d_in=6, d_sae=12)
    with sae.splice(model, "lstm", one, position=-1, keep_error=True):
        torch.testing.assert_close(model(x), model.head(last), rtol=1e-4, atol=1e-5,
                                   msg=lambda m: f"an SAE spliced with its error term changes nothing\n{m}")


# ---- a Hugging Face GPT-2, built offline with random weights ---------------------------------------------

@pytest.fixture(scope="module")
def gpt2():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=50, n_positions=16)
    model = transformers.GPT2LMHeadModel(config).eval()
    tokens = torch.randint(0, 50, (3, 10))
    with torch.no_grad():
        out = model(tokens, output_hidden_states=True)
    return model, tokens, out


def test_gpt2_block_outputs_equal_its_own_hidden_states(gpt2):
    model, tokens, out = gpt2
    with hooks.capture(model, ["transformer.h.0", "transformer.h.1", "transformer[last_hidden_state]", "transformer"]) as acts:
        model(tokens)
    torch.testing.assert_close(acts["transformer.h.0"], out.hidden_states[1], **TOL)
    with torch.no_grad():  # GPT2Model's last hidden state is the last block's output after ln_f
        torch.testing.assert_close(model.transformer.ln_f(acts["transformer.h.1"]), out.hidden_states[2], **TOL)
    torch.testing.assert_close(acts["transformer[last_hidden_state]"], out.hidden_states[-1], **TOL,
                               msg=lambda m: f"GPT2Model's ModelOutput: last_hidden_state is after ln_f\n{m}")
    assert torch.equal(acts["transformer"], acts["transformer[last_hidden_state]"]), "the default is its first tensor"
    torch.testing.assert_close(neurons.get_activations(model, "transformer.h.0", tokens), out.hidden_states[1], **TOL)


def test_gpt2_attention_output_rebuilds_the_block_with_the_mlp(gpt2):
    model, tokens, out = gpt2
    block = "transformer.h.0"
    with hooks.capture(model, [f"{block}.ln_1", f"{block}.attn", f"{block}.attn[0]", f"{block}.mlp"]) as acts:
        model(tokens)
    assert torch.equal(acts[f"{block}.attn"], acts[f"{block}.attn[0]"]), "the default is attn_output"
    resid = out.hidden_states[0]
    torch.testing.assert_close(resid + acts[f"{block}.attn"] + acts[f"{block}.mlp"], out.hidden_states[1], **TOL,
                               msg=lambda m: f"a block is resid + attn_output + mlp(...): attn must be attn_output\n{m}")
    with torch.no_grad():
        called = model.transformer.h[0].attn(acts[f"{block}.ln_1"])[0]
    torch.testing.assert_close(acts[f"{block}.attn"], called, **TOL, msg=lambda m: f"calling the module by hand\n{m}")


def test_patching_gpt2_changes_the_logits_only_when_the_value_changes(gpt2):
    model, tokens, out = gpt2
    with torch.no_grad():
        for name in ("transformer.h.0", "transformer.h.0.attn", "transformer[last_hidden_state]"):
            with hooks.patch(model, {name: lambda a: a.clone()}):
                torch.testing.assert_close(model(tokens).logits, out.logits, **TOL, msg=lambda m: f"{name} with itself\n{m}")
            with hooks.patch(model, {name: lambda a: torch.zeros_like(a)}):
                zeroed = model(tokens).logits
            assert (zeroed - out.logits).abs().max() > 1e-3, f"zeroing {name} must change the logits"
        with hooks.patch(model, {"transformer[last_hidden_state]": lambda a: torch.zeros_like(a)}):
            result = model(tokens)
        assert torch.equal(result.logits, torch.zeros_like(result.logits)), "GPT-2's unembedding has no bias"
        with hooks.patch(model, {"transformer.h.0.attn": lambda a: torch.zeros_like(a)}):
            patched = model(tokens, output_hidden_states=True).hidden_states[1]
        h0 = model.transformer.h[0]
        torch.testing.assert_close(patched, out.hidden_states[0] + h0.mlp(h0.ln_2(out.hidden_states[0])), **TOL,
                                   msg=lambda m: f"with attn_output zeroed, the block is resid + mlp(ln_2(resid))\n{m}")


def test_sae_tools_on_a_gpt2_block(gpt2):
    model, tokens, out = gpt2
    acts = sae.collect_activations(model, "transformer.h.0", tokens, position=-1)
    torch.testing.assert_close(acts, out.hidden_states[1][:, -1], **TOL)
    one = sae.make_sae("standard", d_in=32, d_sae=64)
    with torch.no_grad():
        with sae.splice(model, "transformer.h.0", one, keep_error=True):
            torch.testing.assert_close(model(tokens).logits, out.logits, rtol=1e-4, atol=1e-4)
        with sae.splice(model, "transformer.h.0", one, position=-1):
            spliced = model(tokens).logits
    torch.testing.assert_close(spliced[:, :-1], out.logits[:, :-1], **TOL, msg="a causal model: earlier positions unchanged")
    assert (spliced[:, -1] - out.logits[:, -1]).abs().max() > 1e-3

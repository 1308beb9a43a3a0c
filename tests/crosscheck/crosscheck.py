"""Notebook 10's attribution graph against the reference implementation, circuit-tracer (run by `make crosscheck` in
its own virtual environment, build/crosscheck-venv: circuit-tracer pins transformers<=4.57.3 and huggingface-hub<1.0).

Needs nothing from glassbox and nothing from the network. It reads
  - checkpoints/lm_shakespeare.{pt,json}: our TransformerBridge's weights, copied into a HookedTransformer of this
    environment's TransformerLens (logits checked against ours);
  - checkpoints/transcoder_lm_shakespeare_l{0,1}/: the TopK transcoders (SAELens files), loaded into circuit-tracer's
    SingleLayerTranscoder / TranscoderSet, reading blocks.{l}.ln2.hook_normalized, writing blocks.{l}.hook_mlp_out;
  - build/crosscheck/ours.pt: our graph from glassbox.transcoders (tests/crosscheck/export_ours.py, main .venv);
then runs circuit-tracer's `attribute` on the same tokens with the same target logit, matches nodes by
(layer, position, feature), compares the edges and writes tests/crosscheck/circuit_tracer.json.

Differences by design between the two (each measured, not hidden):
  - circuit-tracer treats position 0 as a BOS-like sink (`zero_positions = slice(0, 1)`): no features and zero error
    vectors there; our character model has no BOS, so our graph keeps position 0's features and errors;
  - circuit-tracer's embedding nodes are the token embeddings (`hook_embed`); ours are token + positional embedding
    (blocks.0.hook_resid_pre). export_ours.py also writes our graph with token-only embeddings for a like-for-like test;
  - circuit-tracer's `TopK` keeps the k largest pre-activations as they are, SAELens' (ours) applies ReLU after: we give
    circuit-tracer TopK followed by ReLU, and report how many features plain TopK would add.
"""
import hashlib
import json
import os
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
CKPT = ROOT / "checkpoints"
MODEL = "lm_shakespeare"
LAYERS = (0, 1)
IN_HOOK, OUT_HOOK = "ln2.hook_normalized", "hook_mlp_out"  # relative to blocks.{l} (circuit-tracer's convention)
RESULT = ROOT / "tests" / "crosscheck" / "circuit_tracer.json"  # not in checkpoints/: see tests/test_crosscheck.py
ATOL = 1e-4  # edges (units of the demeaned logit / of a pre-activation) must agree to this, like for like
LOGIT_ATOL = 1e-4


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- our model as a HookedTransformer --------------------------------------------------------

def hooked_transformer_config(cfg: dict):
    from transformer_lens import HookedTransformerConfig
    return HookedTransformerConfig(
        n_layers=cfg["n_layers"], d_model=cfg["d_model"], n_ctx=cfg["n_ctx"], d_head=cfg["d_head"], n_heads=cfg["n_heads"],
        d_mlp=cfg["d_mlp"], d_vocab=cfg["d_vocab"], act_fn=cfg["act_fn"], normalization_type=cfg["normalization_type"],
        positional_embedding_type="standard", default_prepend_bos=False, model_name=MODEL, device="cpu",
        dtype=torch.float32, seed=cfg.get("seed", 0))


def hooked_state_dict(bridge: dict, cfg: dict) -> dict:
    """TransformerBridge (boot_native, nn.Linear layout) weights -> HookedTransformer parameter names and shapes."""
    H, dh, d = cfg["n_heads"], cfg["d_head"], cfg["d_model"]
    sd = {"embed.W_E": bridge["embed.weight"], "pos_embed.W_pos": bridge["pos_embed.weight"],
          "ln_final.w": bridge["ln_final.weight"], "ln_final.b": bridge["ln_final.bias"],
          "unembed.W_U": bridge["unembed.weight"].T, "unembed.b_U": bridge["unembed.bias"]}
    for l in range(cfg["n_layers"]):
        b, o = f"blocks.{l}.", f"blocks.{l}."
        for ln in ("ln1", "ln2"):
            sd[o + f"{ln}.w"], sd[o + f"{ln}.b"] = bridge[b + f"{ln}.weight"], bridge[b + f"{ln}.bias"]
        for x in ("q", "k", "v"):  # weight (H*dh, d): output rows head-major
            sd[o + f"attn.W_{x.upper()}"] = bridge[b + f"attn.{x}.weight"].reshape(H, dh, d).transpose(1, 2)
            sd[o + f"attn.b_{x.upper()}"] = bridge[b + f"attn.{x}.bias"].reshape(H, dh)
        sd[o + "attn.W_O"] = bridge[b + "attn.o.weight"].T.reshape(H, dh, d)
        sd[o + "attn.b_O"] = bridge[b + "attn.o.bias"]
        sd[o + "mlp.W_in"], sd[o + "mlp.b_in"] = bridge[b + "mlp.in.weight"].T, bridge[b + "mlp.in.bias"]
        sd[o + "mlp.W_out"], sd[o + "mlp.b_out"] = bridge[b + "mlp.out.weight"].T, bridge[b + "mlp.out.bias"]
    return {k: v.contiguous().float() for k, v in sd.items()}


def load_into(model: torch.nn.Module, sd: dict) -> None:
    """Copy `sd` into `model`, whose MLP / unembed may be wrapped by circuit-tracer (old_mlp / old_unembed);
    every model parameter must be set (the transcoders' own are skipped)."""
    own = {k: k.replace(".old_mlp", "").replace(".old_unembed", "") for k in model.state_dict()
           if not k.startswith("transcoders.")}
    params = {k for k, _ in model.named_parameters() if not k.startswith("transcoders.")}
    missing = sorted(k for k in params if own[k] not in sd)
    unused = sorted(set(sd) - {own[k] for k in params})
    if missing or unused:
        raise ValueError(f"weight conversion: missing {missing}, unused {unused}")
    with torch.no_grad():
        state = model.state_dict()
        for k in params:
            state[k].copy_(sd[own[k]])


def char_tokenizer(chars: str, folder: Path):
    """A character-level Hugging Face tokenizer (token id i is chars[i]), saved to and reloaded from a local folder."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    tk = Tokenizer(models.WordLevel({c: i for i, c in enumerate(chars)}, unk_token=chars[0]))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    PreTrainedTokenizerFast(tokenizer_object=tk, clean_up_tokenization_spaces=False).save_pretrained(folder)
    return PreTrainedTokenizerFast.from_pretrained(folder, local_files_only=True)


# ---- the transcoders in circuit-tracer ---------------------------------------------------------

def transcoder_set(k_relu: bool):
    from circuit_tracer.transcoder import SingleLayerTranscoder, TranscoderSet
    from circuit_tracer.transcoder.activation_functions import TopK
    tcs = {}
    for l in LAYERS:
        folder = CKPT / f"transcoder_{MODEL}_l{l}"
        cfg = json.loads((folder / "cfg.json").read_text())
        assert cfg["architecture"] == "topk" and not cfg["apply_b_dec_to_input"] and not cfg["rescale_acts_by_decoder_norm"], cfg
        assert cfg["metadata"]["hook_name"] == f"blocks.{l}.{IN_HOOK}" and cfg["metadata"]["hook_name_out"] == f"blocks.{l}.{OUT_HOOK}"
        w = load_file(folder / "sae_weights.safetensors")
        act = torch.nn.Sequential(TopK(cfg["k"]), torch.nn.ReLU()) if k_relu else TopK(cfg["k"])
        tc = SingleLayerTranscoder(cfg["d_in"], cfg["d_sae"], act, l, device=torch.device("cpu"), dtype=torch.float32)
        tc.load_state_dict({"W_enc": w["W_enc"].T.contiguous(), "W_dec": w["W_dec"], "b_enc": w["b_enc"], "b_dec": w["b_dec"]})
        tcs[l] = tc
    return TranscoderSet(tcs, feature_input_hook=IN_HOOK, feature_output_hook=OUT_HOOK, scan=f"{MODEL}-glassbox")


# ---- comparison -------------------------------------------------------------------------------

def stats(a: torch.Tensor, b: torch.Tensor) -> dict:
    """a: ours, b: circuit-tracer's, same edges."""
    a, b = a.double().flatten(), b.double().flatten()
    if not len(a):
        return {"n_edges": 0}
    d = (a - b).abs()
    scale = torch.maximum(a.abs(), b.abs())
    big = scale > 1e-3 * scale.max().clamp(min=1e-30)  # relative differences where the edge is not ~0
    corr = torch.corrcoef(torch.stack([a, b]))[0, 1].item() if a.std() > 0 and b.std() > 0 else None
    return {"n_edges": len(a), "n_nonzero": int((scale > 0).sum()), "max_abs_diff": d.max().item(),
            "max_rel_diff": (d[big] / scale[big]).max().item() if big.any() else 0.0, "max_abs_edge": scale.max().item(),
            "correlation": corr}


def main() -> int:
    torch.set_num_threads(1)
    start = time.perf_counter()
    from circuit_tracer import ReplacementModel, attribute
    from circuit_tracer.graph import Graph, compute_graph_scores, prune_graph
    from transformer_lens import HookedTransformer

    ours = torch.load(ROOT / "build" / "crosscheck" / "ours.pt", weights_only=False)
    card = json.loads((CKPT / f"{MODEL}.json").read_text())
    weights = CKPT / f"{MODEL}.pt"
    assert sha256(weights) == card["weights_sha256"], "lm_shakespeare.pt does not match its card"
    for rel, digest in ours["checkpoint_sha256"].items():
        assert sha256(ROOT / rel) == digest, f"{rel} changed after export_ours.py ran: rerun make crosscheck"
    cfg = card["config"]
    sd = hooked_state_dict(torch.load(weights, map_location="cpu", weights_only=True), cfg)
    tokens, target = ours["tokens"], int(ours["target"])
    L, P = len(LAYERS), len(tokens)
    tok = char_tokenizer(ours["chars"], ROOT / "build" / "crosscheck" / "tokenizer")
    assert tok(ours["prompt"], add_special_tokens=False).input_ids == tokens.tolist(), "local tokenizer disagrees"
    assert tok.decode(tokens.tolist()) == ours["prompt"]

    # 1. the converted model gives our logits
    ht = HookedTransformer(hooked_transformer_config(cfg), tokenizer=tok)
    load_into(ht, sd)
    with torch.no_grad():
        logits = ht(tokens[None])[0]
    logit_diff = (logits - ours["logits"]).abs().max().item()
    print(f"HookedTransformer logits vs ours: max |diff| {logit_diff:.2e}")

    # 2. circuit-tracer's graph, for two activation functions
    graphs = {}
    for k_relu in (True, False):
        rm = ReplacementModel.from_config(hooked_transformer_config(cfg), transcoder_set(k_relu), backend="transformerlens",
                                          tokenizer=tok)
        load_into(rm, sd)
        # our model has no BOS token and the prompt is a window of text: pass the tokens unchanged (circuit-tracer
        # would otherwise prepend a special token, which this vocabulary does not have)
        rm.ensure_tokenized = lambda prompt: torch.as_tensor(prompt).squeeze()
        with torch.no_grad():
            rm_diff = (rm(tokens[None])[0] - ours["logits"]).abs().max().item()
        t0 = time.perf_counter()
        graphs[k_relu] = attribute(tokens, rm, attribution_targets=torch.tensor([target]), batch_size=256)
        print(f"circuit-tracer attribute ({'TopK+ReLU' if k_relu else 'TopK'}): {time.perf_counter() - t0:.1f} s, "
              f"{len(graphs[k_relu].active_features)} active features; replacement model logits vs ours {rm_diff:.2e}")
    g = graphs[True]
    assert g.logit_targets[0].vocab_idx == target and len(g.logit_targets) == 1

    # 3. nodes: match features by (layer, position, feature)
    key = lambda f: tuple(int(x) for x in f)  # noqa: E731
    o_feats = [key(f) for f in ours["features"]]
    c_feats = [key(f) for f in g.active_features[g.selected_features]]
    o_idx, c_idx = {f: i for i, f in enumerate(o_feats)}, {f: i for i, f in enumerate(c_feats)}
    common = [f for f in o_feats if f in c_idx]
    only_ours, only_ct = sorted(set(o_feats) - set(c_idx)), sorted(set(c_feats) - set(o_idx))
    plain = {key(f) for f in graphs[False].active_features}
    acts_o = ours["activations"][[o_idx[f] for f in common]]
    acts_c = g.activation_values[g.selected_features][[c_idx[f] for f in common]]
    nf_o, nf_c = len(o_feats), len(c_feats)

    def cols(n_f):  # column index of: features (by list), errors [l][p], embeddings [p]
        return (lambda l, p: n_f + l * P + p), (lambda p: n_f + L * P + p)
    err_o, emb_o = cols(nf_o)
    err_c, emb_c = cols(nf_c)
    rows_o = torch.tensor([o_idx[f] for f in common] + [len(ours["adjacency"]) - 1])  # common features, then the logit
    rows_c = torch.tensor([c_idx[f] for f in common] + [len(g.adjacency_matrix) - 1])
    A_o, A_c = ours["adjacency"][rows_o], g.adjacency_matrix[rows_c]
    A_tok = ours["adjacency_token_embeddings"][rows_o]
    fcol_o, fcol_c = torch.tensor([o_idx[f] for f in common]), torch.tensor([c_idx[f] for f in common])
    e_o = torch.tensor([err_o(l, p) for l in range(L) for p in range(1, P)])
    e_c = torch.tensor([err_c(l, p) for l in range(L) for p in range(1, P)])
    m_o, m_c = torch.tensor([emb_o(p) for p in range(P)]), torch.tensor([emb_c(p) for p in range(P)])
    is_logit = torch.zeros(len(rows_o), dtype=torch.bool)
    is_logit[-1] = True
    blocks = {}
    for tname, tmask in (("feature", ~is_logit), ("logit", is_logit)):
        blocks[f"feature->{tname}"] = stats(A_o[tmask][:, fcol_o], A_c[tmask][:, fcol_c])
        blocks[f"error->{tname}"] = stats(A_o[tmask][:, e_o], A_c[tmask][:, e_c])
        blocks[f"token_embedding->{tname}"] = stats(A_tok[tmask][:, m_o], A_c[tmask][:, m_c])
    like = stats(torch.cat([A_o[:, fcol_o], A_o[:, e_o], A_tok[:, m_o]], 1), torch.cat([A_c[:, fcol_c], A_c[:, e_c], A_c[:, m_c]], 1))
    emb_raw = stats(A_o[:, m_o], A_c[:, m_c])
    pos_part = (A_o[:, m_o] - A_tok[:, m_o])  # our embedding edges minus their token-embedding part
    emb_explained = ((A_o[:, m_o] - A_c[:, m_c]) - pos_part).abs().max().item()
    # what circuit-tracer's position-0 convention leaves out of our graph: share of |edge| into the logit and into features
    pos0_cols = torch.tensor([o_idx[f] for f in only_ours if f[1] == 0] + [err_o(l, 0) for l in range(L)])
    full = ours["adjacency"]
    share = lambda rows: (full[rows][:, pos0_cols].abs().sum() / full[rows].abs().sum()).item()  # noqa: E731
    feat_rows_o = torch.arange(nf_o)

    # 4. circuit-tracer's pruning and scores applied to our adjacency, against glassbox's
    gb = Graph(input_string=ours["prompt"], input_tokens=tokens, active_features=ours["features"],
               adjacency_matrix=ours["adjacency"].clone(), cfg=g.cfg, selected_features=torch.arange(nf_o),
               activation_values=ours["activations"], logit_targets=g.logit_targets,
               logit_probabilities=torch.ones(1), vocab_size=g.vocab_size, scan=g.scan)
    pr = prune_graph(gb)
    ct_repl, ct_compl = compute_graph_scores(gb)
    prune = {"nodes_equal": bool(torch.equal(pr.node_mask, ours["pruned_nodes"])),
             "edges_equal": bool(torch.equal(pr.edge_mask, ours["pruned_edges"])),
             "n_nodes_circuit_tracer": int(pr.node_mask.sum()), "n_nodes_glassbox": int(ours["pruned_nodes"].sum()),
             "n_edges_circuit_tracer": int(pr.edge_mask.sum()), "n_edges_glassbox": int(ours["pruned_edges"].sum()),
             "replacement_circuit_tracer": float(ct_repl), "replacement_glassbox": ours["graph_scores"]["replacement"],
             "completeness_circuit_tracer": float(ct_compl),
             "completeness_circuit_tracer_glassbox": ours["graph_scores"]["completeness_circuit_tracer"]}
    ct_scores = [float(x) for x in compute_graph_scores(g)]

    passed = (logit_diff < LOGIT_ATOL and like["max_abs_diff"] < ATOL and not only_ct
              and all(f[1] == 0 for f in only_ours) and emb_explained < ATOL)
    result = {
        "what": "notebook 10's attribution graph (glassbox.transcoders.attribution_graph) against circuit-tracer's "
                "`attribute` on the same model, transcoders, prompt and target logit (tests/crosscheck, make crosscheck)",
        "passed": bool(passed),
        "tolerance_abs": ATOL,
        "prompt": ours["prompt"], "n_positions": P, "target": {"id": target, "char": ours["chars"][target]},
        "model_conversion": {"max_abs_logit_diff": logit_diff, "tolerance": LOGIT_ATOL,
                             "how": "TransformerBridge weights -> transformer_lens.HookedTransformer (this venv's version)"},
        "features": {"ours": nf_o, "circuit_tracer": nf_c, "common": len(common),
                     "only_ours": len(only_ours), "only_ours_all_at_position_0": all(f[1] == 0 for f in only_ours),
                     "only_circuit_tracer": len(only_ct),
                     "max_abs_activation_diff": (acts_o - acts_c).abs().max().item() if common else None,
                     "circuit_tracer_plain_topk_extra": len(plain - set(o_feats) - {f for f in plain if f[1] == 0}),
                     "note": "circuit-tracer zeroes position 0 (BOS convention, zero_positions=slice(0, 1)); with its "
                             "plain TopK (no ReLU) it would also keep the k-largest pre-activations that are <= 0"},
        "like_for_like": like | {"columns": "common features, errors at positions >= 1, token embeddings (ours recomputed "
                                            "with hook_embed in place of hook_resid_pre)",
                                 "rows": "common features and the logit"},
        "by_block": blocks,
        "embedding_edges_as_recorded": emb_raw | {
            "note": "ours: token + positional embedding; circuit-tracer: token embedding only",
            "max_abs_residual_after_removing_positional_part": emb_explained},
        "position_0_left_out_by_circuit_tracer": {
            "feature_nodes": sum(f[1] == 0 for f in only_ours), "error_nodes": L,
            "share_of_abs_edge_mass_into_logit": share(torch.tensor([len(full) - 1])),
            "share_of_abs_edge_mass_into_features": share(feat_rows_o)},
        "pruning_on_our_adjacency": prune,
        "circuit_tracer_scores_on_its_graph": {"replacement": ct_scores[0], "completeness": ct_scores[1]},
        "checkpoint_sha256": ours["checkpoint_sha256"],
        "model_recipe_sha256": card["recipe_sha256"],
        "versions": {"crosscheck_venv": {"python": platform.python_version(), "torch": torch.__version__,
                                         "transformer-lens": version("transformer-lens"), "transformers": version("transformers"),
                                         "circuit-tracer": version("circuit-tracer"), "tokenizers": version("tokenizers")},
                     "main_venv": ours["versions"]},
        "seconds": round(time.perf_counter() - start, 1),
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("passed", "features", "like_for_like", "by_block", "embedding_edges_as_recorded",
                                             "position_0_left_out_by_circuit_tracer", "pruning_on_our_adjacency")}, indent=1))
    print(f"{'PASSED' if passed else 'FAILED'}: wrote {RESULT.relative_to(ROOT)}")
    return 0 if passed else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())

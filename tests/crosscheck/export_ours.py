"""Our side of `make crosscheck` (run by the main .venv, not collected by pytest): notebook 10's attribution graph
from glassbox.transcoders on notebook 10's prompt, written to build/crosscheck/ours.pt for crosscheck.py, which runs
circuit-tracer in its own virtual environment and compares the two graphs.

Also written: the model's logits on the prompt (crosscheck.py checks its HookedTransformer copy against them), the
character vocabulary (for a local tokenizer) and a second adjacency whose embedding nodes hold the token embeddings
only (circuit-tracer's embedding nodes are `hook_embed`, so the positional embedding has no node there)."""
import hashlib
import json
import os
import sys
from pathlib import Path

import torch

from glassbox import transcoders as T
from glassbox.journal import checkpoints, paths
from glassbox.studies import shakespeare

MODEL = "lm_shakespeare"
TRANSCODERS = [f"transcoder_lm_shakespeare_l{layer}" for layer in range(2)]
FINDINGS = paths.FINDINGS_DIR / "10_circuit_tracing.json"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checkpoint_files() -> dict[str, str]:
    """sha256 of the checkpoint files that define the compared computation (weights, and the transcoders' SAELens
    configs), by path relative to the repository. Not the cards: they also hold train times, which change on every rerun;
    the model's architecture is in its card's config, covered by the card's recipe_sha256 (recorded beside)."""
    files = [paths.CHECKPOINT_DIR / f"{MODEL}.pt"]
    files += [paths.CHECKPOINT_DIR / name / f for name in TRANSCODERS for f in ("sae_weights.safetensors", "cfg.json")]
    return {str(p.relative_to(paths.ROOT)): sha256(p) for p in files}


def token_embedding_cache(model):
    """model.run_with_cache, but with blocks.0.hook_resid_pre replaced by hook_embed (the token embeddings alone)."""
    run = model.run_with_cache

    def patched(tokens, names_filter):
        logits, cache = run(tokens, names_filter=list(names_filter) + ["hook_embed"])
        cache = {name: cache[name] for name in list(names_filter) + ["hook_embed"]}
        cache["blocks.0.hook_resid_pre"] = cache["hook_embed"]
        return logits, cache
    return patched


def main(out: Path) -> None:
    torch.set_num_threads(1)
    model = checkpoints.load_model(MODEL)
    tcs = {layer: checkpoints.load_sae(name) for layer, name in enumerate(TRANSCODERS)}
    tok = shakespeare.CharTokenizer.from_text(shakespeare.load_shakespeare())
    prompt = json.loads(FINDINGS.read_text())["prompt"]
    tokens = tok.encode(prompt)
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens[None], names_filter=["hook_embed", "hook_pos_embed"])
    graph = T.attribution_graph(model, tcs, tokens)
    model.run_with_cache = token_embedding_cache(model)  # this object only, for the second graph
    graph_tok = T.attribution_graph(model, tcs, tokens, graph.target)
    del model.run_with_cache
    assert torch.equal(graph.features, graph_tok.features)
    emb = slice(graph.embedding_index(0), graph.logit_index)
    other = torch.ones(len(graph.adjacency), dtype=torch.bool)
    other[emb] = False
    assert torch.equal(graph.adjacency[:, other], graph_tok.adjacency[:, other]), "only embedding columns may change"
    pruned = T.prune(graph)
    from importlib.metadata import version
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "prompt": prompt, "chars": tok.chars, "tokens": tokens, "logits": logits[0], "target": graph.target,
        "features": graph.features, "activations": graph.activations, "adjacency": graph.adjacency,
        "adjacency_token_embeddings": graph_tok.adjacency, "values": graph.values, "n_layers": graph.n_layers,
        "pruned_nodes": pruned.nodes, "pruned_edges": pruned.edges, "node_influence": pruned.node_influence,
        "graph_scores": T.graph_scores(graph),
        "pos_embed_norm": cache["hook_pos_embed"][0].norm(dim=-1), "embed_norm": cache["hook_embed"][0].norm(dim=-1),
        "checkpoint_sha256": checkpoint_files(),
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     **{name: version(name) for name in ("transformer-lens", "sae-lens", "glassbox")}},
    }, out)
    print(f"ours: {graph.n_features} active features, {len(graph.adjacency)} nodes, target {tok.chars[graph.target]!r} -> {out}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else paths.BUILD_DIR / "crosscheck" / "ours.pt")

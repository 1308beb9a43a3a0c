"""glassbox: small, tested helpers for looking inside PyTorch models.

Three rooms, and the folders show which is which (imports only go down):
- the tools, for any model, at the top: checks, hooks, neurons, probes, attribution, ablation,
  lens, circuits, patching, sae, transcoders, training, lm, fourier, viz;
- the journal's studies, one module per study: `glassbox.studies` (mnist_mlp, find_median,
  superposition, backdoor, pruning, regularisation, shakespeare, char_features, grokking, models);
- the machinery that runs and renders the notebooks: `glassbox.journal` (the run contract,
  findings, checkpoints, the runner and the website).

Import what you need, e.g. `from glassbox import hooks`. Notebooks call `glassbox.start(...)` and
`glassbox.finish()` (the run contract) and `findings.record(...)`.
"""
from glassbox.journal import findings, paths
from glassbox.journal.contract import finish, set_seed, start

__all__ = ["start", "finish", "set_seed", "findings", "paths"]
__version__ = "0.1.0"

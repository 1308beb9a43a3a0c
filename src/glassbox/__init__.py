"""glassbox: small, tested helpers for looking inside PyTorch models.

Three kinds of module, so that a reader sees at a glance which part to reuse:
- tools for any model: hooks, neurons, probes, attribution, ablation, circuits, lens, sae,
  superposition, fourier, viz;
- the journal's experiments: data, text, models, training, lm, checkpoints, concepts, backdoor,
  pruning, regularisation, grokking, features;
- the machinery that runs and renders the notebooks: the subpackage `glassbox.journal`.

Import what you need, e.g. `from glassbox import hooks`. Notebooks call `glassbox.start(...)` and
`glassbox.finish()` (the run contract) and `findings.record(...)`.
"""
from glassbox.journal import findings, paths
from glassbox.journal.contract import finish, set_seed, start

__all__ = ["start", "finish", "set_seed", "findings", "paths"]
__version__ = "0.1.0"

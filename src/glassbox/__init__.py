"""glassbox: small, tested helpers for looking inside PyTorch models.

Modules are named by concept: data, models, training, checkpoints, hooks, findings, notebook,
journal (running and rendering the notebooks). Import what you need, e.g.
`from glassbox import hooks`.
"""
from glassbox.notebook import finish, start
from glassbox.training import set_seed

__all__ = ["start", "finish", "set_seed"]
__version__ = "0.1.0"

"""Models saved as weights (<name>.pt) plus a JSON card (<name>.json) that can rebuild them.

The card holds the model kind and config (enough to rebuild it with `models.build`), its metrics,
the seed, the training seconds, the package versions and the sha256 of the weights file.
"""
import hashlib
import io
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from glassbox import findings, models, notebook, paths

if TYPE_CHECKING:
    from sae_lens import SAE

VERSIONED = ("torch", "transformer_lens", "sae-lens", "glassbox")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in VERSIONED:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _default_dir() -> Path:
    run = notebook.current()
    return run.checkpoint_dir if run else paths.CHECKPOINT_DIR


def save_model(
    model: nn.Module,
    name: str,
    *,
    kind: str,
    config: dict,
    metrics: dict[str, Any],
    seed: int,
    train_seconds: float,
    directory: Path | None = None,
) -> Path:
    """Save weights and card; returns the card path. Smoke runs save to the scratch folder."""
    if kind not in models.BUILDERS:
        raise KeyError(f"unknown model kind {kind!r}; register a builder in glassbox.models.BUILDERS")
    directory = Path(directory or _default_dir())
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    weights = buffer.getvalue()
    card = {
        "name": name,
        "kind": kind,
        "config": findings.to_json(config),
        "metrics": findings.to_json(metrics),
        "seed": seed,
        "train_seconds": round(float(train_seconds), 2),
        "versions": _versions(),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
    }
    tmp = directory / f".{name}.pt.tmp"
    tmp.write_bytes(weights)
    tmp.replace(directory / f"{name}.pt")
    paths.atomic_write_text(directory / f"{name}.json", json.dumps(card, indent=2) + "\n")
    return directory / f"{name}.json"


def available(directory: Path | None = None) -> list[str]:
    """Names of the checkpoints that have a card in `directory` (default: checkpoints/)."""
    return sorted(p.stem for p in Path(directory or paths.CHECKPOINT_DIR).glob("*.json"))


def load_card(name: str, directory: Path | None = None) -> dict[str, Any]:
    """The JSON card of checkpoint `name`, with a clear error for an unknown name."""
    directory = Path(directory or paths.CHECKPOINT_DIR)
    path = directory / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint named {name!r} in {directory}; available: {', '.join(available(directory)) or 'none'}. "
            "Run the notebook that trains it (see README: notebooks) to create it.")
    return json.loads(path.read_text())


def load_model(name: str, directory: Path | None = None) -> nn.Module:
    """Rebuild checkpoint `name` from its card alone, load its weights, return it in eval mode.

    Always reads the committed checkpoints/ unless `directory` is given, also in smoke runs.
    """
    directory = Path(directory or paths.CHECKPOINT_DIR)
    card = load_card(name, directory)
    weights_path = directory / f"{name}.pt"
    if not weights_path.is_file():
        raise FileNotFoundError(f"card {name}.json has no weights file {weights_path}; rerun the notebook that trains it")
    weights = weights_path.read_bytes()
    if hashlib.sha256(weights).hexdigest() != card["weights_sha256"]:
        raise ValueError(f"{weights_path.name} does not match its card {name}.json (sha256 differs): the weights "
                         "were changed or the card belongs to another run; retrain or restore both files together")
    model = models.build(card["kind"], card["config"])
    state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"the weights of {name!r} do not fit a {card['kind']} built from its card's config: {err}") from None
    return model.eval()


# ---- sparse autoencoders: a folder <name>/ with SAELens' own files (sae_weights.safetensors,
# cfg.json: `sae_lens.SAE.load_from_disk` reads them) plus our card.json (metrics, seed, train time).

SAE_WEIGHTS = "sae_weights.safetensors"


def available_saes(directory: Path | None = None) -> list[str]:
    """Names of the SAE checkpoints (folders with a card.json) in `directory` (default: checkpoints/)."""
    return sorted(p.parent.name for p in Path(directory or paths.CHECKPOINT_DIR).glob("*/card.json"))


def save_sae(sae: "SAE", name: str, *, config: dict, metrics: dict[str, Any], seed: int, train_seconds: float,
             directory: Path | None = None) -> Path:
    """Save a SAELens (inference) SAE as folder `name`/ with its card; returns the card path."""
    import shutil

    directory = Path(directory or _default_dir())
    tmp, folder = directory / f".{name}.tmp", directory / name
    shutil.rmtree(tmp, ignore_errors=True)
    sae.save_model(tmp)
    card = {
        "name": name,
        "kind": "sae",
        "architecture": sae.cfg.architecture(),
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae,
        "model_name": sae.cfg.metadata.model_name,
        "hook_name": sae.cfg.metadata.hook_name,
        "config": findings.to_json(config),
        "metrics": findings.to_json(metrics),
        "seed": seed,
        "train_seconds": round(float(train_seconds), 2),
        "versions": _versions(),
        "weights_sha256": hashlib.sha256((tmp / SAE_WEIGHTS).read_bytes()).hexdigest(),
    }
    (tmp / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)
    return folder / "card.json"


def load_sae_card(name: str, directory: Path | None = None) -> dict[str, Any]:
    """The card of SAE checkpoint `name`, with a clear error for an unknown name."""
    directory = Path(directory or paths.CHECKPOINT_DIR)
    path = directory / name / "card.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no SAE checkpoint named {name!r} in {directory} (expected {path}); available SAEs: "
            f"{', '.join(available_saes(directory)) or 'none'}. Run notebooks/04_sparse_autoencoders.ipynb to create them.")
    return json.loads(path.read_text())


def load_sae(name: str, directory: Path | None = None) -> "SAE":
    """The SAELens SAE saved as `name` (checked against its card's sha256), in eval mode."""
    from sae_lens import SAE

    directory = Path(directory or paths.CHECKPOINT_DIR)
    card = load_sae_card(name, directory)
    weights = directory / name / SAE_WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"SAE {name!r} has a card but no {SAE_WEIGHTS}; rerun notebook 04 to recreate it")
    if hashlib.sha256(weights.read_bytes()).hexdigest() != card["weights_sha256"]:
        raise ValueError(f"{weights} does not match {name}/card.json (sha256 differs): restore both from git "
                         "or rerun notebook 04")
    return SAE.load_from_disk(directory / name).eval()

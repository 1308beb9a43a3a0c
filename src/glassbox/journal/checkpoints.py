"""Models saved as weights (<name>.pt) plus a JSON card (<name>.json) that can rebuild them.

The card holds the checkpoint's name, the model kind and config (enough to rebuild it with
`models.build`), its metrics, the seed, the training seconds, the package versions, the sha256 of the
weights file, the sha256 of what rebuilds the model (kind and config) and the sha256 of the card itself
(`card_sha256`, over every other field), so an edited card is refused like edited weights, and a
checkpoint copied over another (its card names the other) is refused too. A smoke run's checkpoint
says so in its card and is refused outside smoke runs.

Inside a notebook run, saving writes to the run's staging folder (promoted to checkpoints/ when the
whole notebook has run) and loading looks there first, then in checkpoints/.
"""
import hashlib
import io
import json
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from glassbox.studies import models
from glassbox.journal import contract, findings, paths, record

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


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _checked_name(name: str) -> str:
    """`name` if it is a plain file name (no folders, no leading dot), else a ValueError."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"checkpoint names are plain file names (letters, digits, '_', '-', '.'; no folders), "
                         f"got {name!r}")
    return name


def _default_dir() -> Path:
    run = contract.current()
    return run.checkpoint_dir if run else paths.CHECKPOINT_DIR


def _find(name: str, directory: Path | None, suffix: str) -> Path:
    """The folder holding checkpoint `name`: `directory` if given; else this run's staging folder if it
    saved `name`, else checkpoints/."""
    if directory is not None:
        return Path(directory)
    run = contract.current()
    if run is not None and (run.checkpoint_dir / f"{name}{suffix}").is_file():
        return run.checkpoint_dir
    record.refuse_if_torn(paths.BUILD_DIR)
    return paths.CHECKPOINT_DIR


def _read_card(path: Path, required: tuple[str, ...]) -> dict[str, Any]:
    """A card's JSON, with errors that name the file for a truncated card or a missing field."""
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"checkpoint card {path} is not valid JSON ({err}); restore it from git or retrain") from None
    missing = [k for k in required if k not in card] if isinstance(card, dict) else list(required)
    if missing:
        raise ValueError(f"checkpoint card {path} lacks {missing}; restore it from git or retrain")
    return card


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def card_sha256(card: dict[str, Any]) -> str:
    """The sha256 of a card's fields other than `card_sha256` itself, as canonical JSON."""
    return _sha256(json.dumps({k: v for k, v in card.items() if k != "card_sha256"}, sort_keys=True).encode())


def _sealed(card: dict[str, Any]) -> dict[str, Any]:
    """`card` marked as a smoke run's when it is one, and sealed with its own sha256."""
    run = contract.current()
    if run is not None and run.smoke:
        card["smoke"] = True
    card["card_sha256"] = card_sha256(card)
    return card


def _check_card(card: dict[str, Any], name: str, path: Path, weights: str) -> None:
    """Refuse a card whose fields were edited, that names another checkpoint, or that a smoke run wrote."""
    if card.get("card_sha256") != card_sha256(card):
        raise ValueError(f"{paths.shown(path)} was edited after saving (its card_sha256 does not match its fields); "
                         f"restore it with {weights} from git, or retrain")
    if card.get("name") != name:
        raise ValueError(f"{paths.shown(path)} is the card of checkpoint {card.get('name')!r}, not of {name!r}: "
                         f"it and {weights} were copied or swapped; restore both from git, or retrain")
    run = contract.current()
    if card.get("smoke") and not (run is not None and run.smoke):
        raise ValueError(f"{paths.shown(path)} comes from a smoke run (tiny sizes), not from a real one; restore it "
                         f"with {weights} from git, or retrain")


def recipe_sha256(kind: str, config: dict) -> str:
    """The sha256 of what rebuilds a model: its kind and config, as canonical JSON."""
    return _sha256(json.dumps({"kind": kind, "config": config}, sort_keys=True).encode())


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
    """Save weights and card (to the run's staging folder inside a notebook run); returns the card path."""
    _checked_name(name)
    if kind not in models.BUILDERS:
        raise KeyError(f"unknown model kind {kind!r}; register a builder in glassbox.studies.models.BUILDERS")
    directory = Path(directory or _default_dir())
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    weights = buffer.getvalue()
    card = {
        "name": name,
        "kind": kind,
        "config": findings.to_json(config),
        "recipe_sha256": recipe_sha256(kind, findings.to_json(config)),
        "metrics": findings.to_json(metrics),
        "seed": seed,
        "train_seconds": round(float(train_seconds), 2),
        "versions": _versions(),
        "weights_sha256": _sha256(weights),
    }
    _sealed(card)
    paths.atomic_write_bytes(directory / f"{name}.pt", weights)
    paths.atomic_write_text(directory / f"{name}.json", json.dumps(card, indent=2) + "\n")
    return directory / f"{name}.json"


def available(directory: Path | None = None) -> list[str]:
    """Names of the checkpoints that have a card in `directory` (default: checkpoints/)."""
    return sorted(p.stem for p in Path(directory or paths.CHECKPOINT_DIR).glob("*.json"))


CARD_FIELDS = ("name", "kind", "config", "recipe_sha256", "weights_sha256", "card_sha256")


def load_card(name: str, directory: Path | None = None) -> dict[str, Any]:
    """The JSON card of checkpoint `name` (see `load_model` for where it is looked for), with clear
    errors for an unknown name, a truncated card, a missing field or an edited kind / config."""
    directory = _find(_checked_name(name), directory, ".json")
    path = directory / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint named {name!r} in {paths.shown(directory)}; available: "
            f"{', '.join(available(directory)) or 'none'}. Run the notebook that trains it (see README: notebooks).")
    card = _read_card(path, CARD_FIELDS)
    _check_card(card, name, path, f"{name}.pt")
    if recipe_sha256(card["kind"], card["config"]) != card["recipe_sha256"]:
        raise ValueError(f"the kind or config in {path} was edited after saving (recipe sha256 differs); "
                         "restore the card from git, or retrain to change the model")
    return card


def load_model(name: str, directory: Path | None = None) -> nn.Module:
    """Rebuild checkpoint `name` from its card alone, load its weights, return it in eval mode.

    Looks in `directory` if given; inside a notebook run, in the run's own staging folder first (a
    model the same run saved), then in the committed checkpoints/.
    """
    directory = _find(_checked_name(name), directory, ".json")
    card = load_card(name, directory)
    weights_path = directory / f"{name}.pt"
    if not weights_path.is_file():
        raise FileNotFoundError(f"card {name}.json has no weights file {paths.shown(weights_path)}; "
                                "rerun the notebook that trains it")
    weights = weights_path.read_bytes()
    if _sha256(weights) != card["weights_sha256"]:
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
SAE_CFG = "cfg.json"  # SAELens' config: architecture, k, sizes; covered by the card's cfg_sha256


def available_saes(directory: Path | None = None) -> list[str]:
    """Names of the SAE checkpoints (folders with a card.json) in `directory` (default: checkpoints/)."""
    return sorted(p.parent.name for p in Path(directory or paths.CHECKPOINT_DIR).glob("*/card.json")
                  if not p.parent.name.startswith("."))


def save_sae(sae: "SAE", name: str, *, config: dict, metrics: dict[str, Any], seed: int, train_seconds: float,
             directory: Path | None = None) -> Path:
    """Save a SAELens (inference) SAE as folder `name`/ with its card; returns the card path."""
    import shutil
    import tempfile

    directory = Path(directory or _default_dir())
    tmp = Path(tempfile.mkdtemp(prefix=f".{_checked_name(name)}.", dir=_mkdir(directory)))
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
        "weights_sha256": _sha256((tmp / SAE_WEIGHTS).read_bytes()),
        "cfg_sha256": _sha256((tmp / SAE_CFG).read_bytes()),
    }
    _sealed(card)
    (tmp / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    paths.replace(tmp, directory / name)
    shutil.rmtree(tmp)
    return directory / name / "card.json"


def _mkdir(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def load_sae_card(name: str, directory: Path | None = None) -> dict[str, Any]:
    """The card of SAE checkpoint `name`, with a clear error for an unknown name."""
    directory = _find(_checked_name(name), directory, "/card.json")
    path = directory / name / "card.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no SAE checkpoint named {name!r} in {directory} (expected {path}); available SAEs: "
            f"{', '.join(available_saes(directory)) or 'none'}. Run the notebook that trains it to create it.")
    card = _read_card(path, ("name", "weights_sha256", "cfg_sha256", "card_sha256"))
    _check_card(card, name, path, f"the rest of {name}/")
    return card


def load_sae(name: str, directory: Path | None = None) -> "SAE":
    """The SAELens SAE saved as `name` (checked against its card's sha256), in eval mode."""
    from sae_lens import SAE

    directory = _find(_checked_name(name), directory, "/card.json")
    card = load_sae_card(name, directory)
    for file, key in ((SAE_WEIGHTS, "weights_sha256"), (SAE_CFG, "cfg_sha256")):
        path = directory / name / file
        if not path.is_file():
            raise FileNotFoundError(f"SAE {name!r} has a card but no {file}; restore the folder from git or retrain it")
        if _sha256(path.read_bytes()) != card[key]:
            raise ValueError(f"{paths.shown(path)} does not match {name}/card.json (sha256 differs): it was edited "
                             "after saving; restore the folder from git or retrain")
    return SAE.load_from_disk(directory / name).eval()

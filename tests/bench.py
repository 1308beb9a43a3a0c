"""`make bench`: run every `bench_*` function in tests/benchmarks/bench_*.py, print a table,
save build/bench.json. Each function returns a dict of measurements (seconds, throughputs, and the
quality reached, so a fast but broken run is visible; bench_overhead.py adds ratios to plain PyTorch loops,
robust to load, and fractions of the machine's matmul peak, comparable across machines). Targets live beside
each measurement."""
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "build" / "bench.json"


def discover(only: list[str]) -> list[tuple[str, callable]]:
    found = []
    for path in sorted((HERE / "benchmarks").glob("bench_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found += [(name, fn) for name, fn in vars(module).items()
                  if name.startswith("bench_") and callable(fn) and (not only or any(o in name for o in only))]
    return found


def main(only: list[str]) -> None:
    results = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                           "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}}
    for name, fn in discover(only):
        start = time.perf_counter()
        row = fn()
        row.setdefault("wall_seconds", round(time.perf_counter() - start, 2))
        results[name.removeprefix("bench_")] = row
        print(f"{name.removeprefix('bench_'):<34} " + "  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {OUT}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""What pausing the garbage collector for a process's imports and freezing what they created
(``ae_lightning/startup.py``) saves: the import of a suite run's module, and whole suite runs, each timed with it and
without it (the context manager replaced by a no-op), alternately.

    python benchmarks/startup.py               # 3 rounds, about 2 minutes on 2 cores
    python benchmarks/startup.py --rounds 5

The runs: one Autoencoder run of 3 epochs on 2000 generated MNIST-format images, W&B offline and W&B disabled
(a run's own process, as ``compare`` starts it). Prints the median of each and writes nothing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from datasets import write_mnist_like  # noqa: E402  (the tests' generated data)

# the run module as `python -m ae_lightning.suite.run RUN_DIR` runs it, optionally with the pause replaced by a no-op
RUNNER = """
import contextlib, runpy, sys
if sys.argv.pop(1) == "off":
    import ae_lightning.startup
    ae_lightning.startup.collector_paused_for_imports = contextlib.nullcontext
runpy.run_module("ae_lightning.suite.run", run_name="{name}")
"""


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def run_dirs(work: Path) -> dict[str, Path]:
    """Plan a two-variant suite (offline and disabled W&B runs are made by running it twice) and return its run
    directories, by W&B mode."""
    write_mnist_like(work / "data" / "MNIST" / "raw", n_train=2000)
    dirs = {}
    for mode in ("offline", "disabled"):
        suite = {
            "name": f"startup-{mode}",
            "data": {"name": "mnist", "root": str(work / "data"), "download": False, "val_size": 100},
            "trainer": {"max_epochs": 3, "accelerator": "cpu"},
            "evaluation": {"probe_train_samples": 200, "jacobian_samples": 20},
            "wandb": {"mode": mode},
            "variants": [{"name": "AE", "model": "Autoencoder"}],
        }
        (work / f"{mode}.yaml").write_text(yaml.safe_dump(suite))
        out = work / mode
        # --task-index 0 writes the run's files and trains it once; its directory is then re-run below
        subprocess.run(
            [sys.executable, "-m", "ae_lightning", "compare", str(work / f"{mode}.yaml"), "--out", str(out),
             "--task-index", "0"],
            check=True, capture_output=True,
        )  # fmt: skip
        dirs[mode] = out / "runs" / "AE" / "seed0"
    return dirs


def fresh(run_dir: Path) -> None:
    """Forget a run's results, so the next start trains it again from scratch."""
    for name in ("checkpoints", "wandb"):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    for name in ("result.json", "metrics.csv", "log.txt"):
        (run_dir / name).unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = run_dirs(Path(tmp))
        for _ in range(rounds):
            for state in ("off", "on"):
                # the import alone: the module is imported, not run
                command = [sys.executable, "-c", RUNNER.format(name="not_main"), state]
                times.setdefault(f"import ae_lightning.suite.run, pause {state}", []).append(timed(command))
                for mode, run_dir in dirs.items():
                    fresh(run_dir)
                    command = [sys.executable, "-c", RUNNER.format(name="__main__"), state, str(run_dir)]
                    times.setdefault(f"one run, W&B {mode}, pause {state}", []).append(timed(command))
    for label, values in times.items():
        print(f"{label:45s} median {statistics.median(values):5.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()

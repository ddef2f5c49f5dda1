"""Verdicts of the GPU smoke test (``scripts/gpu_smoke.sh``): one line per check, exit 1 if any failed.

    python -m ae_lightning.smoke OUT [--expect-device cuda] [--gpus N]

OUT holds one results directory per part of the smoke test (``one_gpu``, ``two_per_gpu``, ``ddp``, ``bf16``,
``compile``), each written by ``ae-lightning compare``. For every part present it checks that every run finished
(``status: done``), that the battery ran on the expected device, that ``fit/peak_mem_mb`` was measured on it (GPU
memory, not the host's), and for ``ddp`` that the run used every GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PARTS = ("one_gpu", "two_per_gpu", "ddp", "bf16", "compile")


def results_of(part_dir: Path) -> list[dict]:
    """Every run's result.json of one part (with its variant and seed), from its summary."""
    summary = json.loads((part_dir / "summary.json").read_text())
    results = []
    for record in summary:
        path = Path(record["run_dir"]) / "result.json"
        result = json.loads(path.read_text()) if path.is_file() else {}
        results.append({"variant": record["variant"], "seed": record["seed"], "status": record["status"], **result})
    return results


def check_part(part: str, part_dir: Path, expect_device: str, gpus: int) -> list[tuple[bool, str]]:
    """(passed, verdict line) for each check of one part."""
    if not (part_dir / "summary.json").is_file():
        return [(False, f"{part}: no summary.json in {part_dir} (the compare run did not finish)")]
    runs = results_of(part_dir)

    def offenders(fails) -> list[str]:
        return [f"{r['variant']}/seed{r['seed']}" for r in runs if fails(r)]

    def on_expected(key: str):
        return lambda r: not str(r.get(key)).startswith(expect_device)

    not_done = offenders(lambda r: r["status"] != "done")
    evaluated_elsewhere = offenders(on_expected("evaluated_on"))
    memory_elsewhere = offenders(
        lambda r: on_expected("trained_on")(r) or not r.get("metrics", {}).get("fit/peak_mem_mb")
    )
    peaks = ", ".join(
        f"{r['metrics']['fit/peak_mem_mb']:.0f}" for r in runs if "fit/peak_mem_mb" in r.get("metrics", {})
    )
    verdicts = [
        (not not_done, f"{part}: every run done ({len(runs) - len(not_done)} of {len(runs)}); not done: {not_done}"),
        (not evaluated_elsewhere, f"{part}: battery ran on {expect_device}; elsewhere: {evaluated_elsewhere}"),
        (
            not memory_elsewhere,
            f"{part}: fit/peak_mem_mb is {expect_device} memory ({peaks} MiB); not: {memory_elsewhere}",
        ),
    ]
    if part == "ddp":
        sizes = [r.get("world_size") for r in runs]
        verdicts.append(
            (all(size == gpus for size in sizes), f"ddp: every run on all {gpus} GPU(s); world sizes {sizes}")
        )
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ae_lightning.smoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the smoke test's output directory")
    parser.add_argument("--expect-device", default="cuda", help="device type the runs must have used (default cuda)")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs a --ddp run must have used")
    args = parser.parse_args(argv)
    parts = [part for part in PARTS if (args.out / part).is_dir()]
    if not parts:
        print(f"FAIL  nothing to check: none of {list(PARTS)} under {args.out}")
        return 1
    failed = 0
    for part in parts:
        for ok, line in check_part(part, args.out / part, args.expect_device, args.gpus):
            print(f"{'PASS' if ok else 'FAIL'}  {line}", flush=True)
            failed += not ok
    print(f"gpu smoke: {'all checks passed' if not failed else f'{failed} check(s) FAILED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

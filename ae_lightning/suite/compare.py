"""``ae-lightning compare SUITE.yaml``: train every (variant, seed) of a suite on identical data, judge them with
one evaluation battery, and compare them in W&B (one group) and in a local report.

Each run is its own process (``python -m ae_lightning.suite.run RUN_DIR``), so a crash or an OOM in one cannot
take down the others and W&B runs never mix. With G GPUs visible to this process (the inherited
``CUDA_VISIBLE_DEVICES``: indices, UUIDs or MIG instances), G × K runs go in parallel, K per GPU
(``--runs-per-gpu K``, default 1; ``--ddp``: each run on all of them, one after another); on the CPU one at a time
(``--parallel N``: N at once). A suite whose ``trainer`` says ``{accelerator: cpu, strategy: ddp, devices: N}`` runs
each run as N gloo processes. CPU threads are shared out from the CPUs this process may use (its affinity,
``SLURM_CPUS_PER_TASK``). Results are written per run as soon as it finishes; re-running the same command with the
same ``--out`` skips finished runs.

Output directory::

    OUT/suite.json                    the resolved suite and its id (the W&B group)
    OUT/runs/<variant>/seed<s>/       one run: config.yaml, run.json, log.txt, result.json, metrics.csv,
                                      checkpoints/, wandb/ (one_class suites: runs/<variant>/class<c>/seed<s>/)
    OUT/summary.json, summary.csv     one record per run: variant, seed, status, error, metrics
    OUT/report.md + *.png             the comparison
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from ae_lightning.devices import usable_cpus, visible_gpus
from ae_lightning.errors import ConfigError
from ae_lightning.evaluation.baseline import write_pixel_baseline
from ae_lightning.evaluation.report import write_report, write_wandb_summary
from ae_lightning.files import write_json_atomic
from ae_lightning.quiet import quiet_libraries
from ae_lightning.suite.config import (
    load_suite,
    parse_suite_args,
    protocol_classes,
    run_spec,
    suite_parser,
    with_variant_data,
)
from ae_lightning.suite.launch import Run, Slots, execute, result_of
from ae_lightning.suite.preflight import check_suite_data


def plan_runs(suite: dict[str, Any], suite_id: str, out: Path, ddp: bool) -> list[Run]:
    """Every (variant, seed) — and under the one-class protocol every (variant, normal class, seed) — as a run in
    ``OUT/runs/<variant>/[class<c>/]seed<s>``."""
    runs = []
    for variant in suite["variants"]:
        for normal_class in protocol_classes(suite):
            for seed in suite["seeds"]:
                spec = run_spec(suite, suite_id, variant, seed, normal_class)
                if ddp:
                    spec["trainer"].update(devices=-1, strategy="ddp")
                spec["evaluation"] = {**suite["evaluation"], "noise_seed": suite["data"].get("seed", 0)}
                directory = out / "runs" / variant["name"]
                directory = directory / f"class{normal_class}" if normal_class is not None else directory
                run = Run(variant["name"], seed, spec, directory / f"seed{seed}", len(runs) + 1, normal_class)
                runs.append(run)
    return runs


def records_of(runs: list[Run]) -> list[dict[str, Any]]:
    records = []
    for run in runs:
        result = run.result or result_of(run) or {"status": "not run", "error": None}
        records.append(
            {
                "variant": run.variant,
                "model": run.spec["model"],
                "seed": run.seed,
                **({"normal_class": run.normal_class} if run.normal_class is not None else {}),
                "status": result.get("status"),
                "error": result.get("error"),
                "metrics": result.get("metrics", {}),
                "trained_on": result.get("trained_on"),
                "collapse": result.get("collapse"),
                "run_dir": str(run.directory),
            }
        )
    return records


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = suite_parser("ae-lightning compare", __doc__.split("\n\n")[0])
    parser.add_argument("--count", action="store_true", help="print the number of runs and exit")
    parser.add_argument(
        "--task-index",
        type=int,
        default=None,
        help="run only run I (0-based; a SLURM array task), without writing the report",
    )
    return parse_suite_args(parser, argv)


def check_ddp(args: argparse.Namespace, gpus: list[str]) -> None:
    if args.ddp and not gpus:
        raise ConfigError(
            "--ddp runs each run on all GPUs, but this process sees none "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}, torch.cuda.device_count()=0). "
            "For DDP on CPU processes give the suite trainer: {accelerator: cpu, strategy: ddp, devices: 2}"
        )


def resolve_wandb_mode(mode: str) -> str:
    """``auto``: online when logged in, offline otherwise (sync later with ``wandb sync``)."""
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE") in ("offline", "disabled", "online"):
        return os.environ["WANDB_MODE"]
    try:
        import wandb

        # wandb.login(prompt=False) reads the stored key without asking for one (wandb.api is deprecated)
        logged_in = bool(os.environ.get("WANDB_API_KEY")) or bool(wandb.login(prompt=False))
    except Exception:
        logged_in = False
    return "online" if logged_in else "offline"


def establish_suite(out: Path, suite: dict[str, Any]) -> str:
    """Write OUT/suite.json and return the suite's id (the W&B group): kept from an earlier start in OUT, so a
    re-run continues the same group."""
    out.mkdir(parents=True, exist_ok=True)
    previous = json.loads((out / "suite.json").read_text()) if (out / "suite.json").is_file() else {}
    # Array tasks start at once: they agree on the id (the W&B group) through the array's job id.
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    suite_id = previous.get("suite_id") or (
        f"{suite['name']}-slurm{array_job}" if array_job else f"{suite['name']}-{datetime.now():%Y%m%d-%H%M%S}"
    )
    suite["wandb"]["mode"] = resolve_wandb_mode(suite["wandb"]["mode"])
    write_json_atomic(out / "suite.json", {"suite_id": suite_id, "suite": copy.deepcopy(suite)})
    return suite_id


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    quiet_libraries()
    suite = load_suite(args.suite, args)
    out = args.out or Path("results") / suite["name"]
    gpus = visible_gpus(os.environ, torch.cuda.device_count())
    if args.count:  # for sizing a SLURM array; the data checked before the array starts
        check_suite_data(suite)
        print(len(suite["variants"]) * len(protocol_classes(suite)) * len(suite["seeds"]))
        return 0
    check_ddp(args, gpus)
    # a setting every run would fail on: exit 2 now — once, not in each SLURM array task (they start together, and
    # the job that submits them checks first: `compare --count` runs the same check)
    checked = args.report_only or args.task_index is not None
    notes = [] if checked else check_suite_data(suite)
    return run_suite(suite, args, out, gpus, notes)


def run_suite(
    suite: dict[str, Any], args: argparse.Namespace, out: Path, gpus: list[str], notes: list[str] = ()
) -> int:
    """Train and judge every (variant, seed) not yet done in OUT, then write the summary and the report
    (``notes``: what the up-front data check found, printed under the header)."""
    suite_id = establish_suite(out, suite)
    runs = plan_runs(suite, suite_id, out, args.ddp)
    task_index = getattr(args, "task_index", None)
    if task_index is not None:
        if not 0 <= task_index < len(runs):
            raise ConfigError(f"--task-index {task_index}: this suite has runs 0 to {len(runs) - 1}")
        runs = [runs[task_index]]
    finished = [r for r in runs if (result_of(r) or {}).get("status") == "done"]
    pending = [] if args.report_only else [r for r in runs if r not in finished]
    cpus = usable_cpus(os.environ)
    slots = Slots(gpus, args.ddp, args.parallel, args.runs_per_gpu, cpus)
    if gpus:
        place = f"GPU(s) {','.join(gpus)}" + (" with DDP" if args.ddp else f", {args.runs_per_gpu} run(s) per GPU")
    else:
        place = f"CPU ({cpus} cores), {args.parallel} at a time"
    print(
        f"suite {suite['name']} ({suite_id}): {len(runs)} runs, {len(pending)} to do, on {place}; "
        f"W&B {suite['wandb']['mode']}; results in {out}",
        flush=True,
    )
    for note in notes:
        print(f"note: {note}", flush=True)
    for run in finished:
        print(f"[{run.index}/{len(runs)} {run.label}] already done, skipped", flush=True)
    interrupted = execute(pending, slots, len(runs))
    if interrupted:  # SIGTERM (preemption, scancel): leave the runs to resume; record nothing as failed
        return 128 + signal.SIGTERM
    records = records_of(runs)
    if task_index is not None:  # one array task: the report job assembles the suite
        return 0 if records[0]["status"] == "done" else 1
    write_json_atomic(out / "summary.json", records)
    seconds = {}  # after the last run, each stage says when it starts (a log is never silent for long) and is timed
    for stage, what, write in (
        (
            "baseline",
            "the pixel baseline (probes, k-NN and PCA on the raw pixels)",
            lambda: write_pixel_baseline(out, suite),
        ),
        (
            "report",
            "the report, its statistics and figures",
            lambda: write_report(out, with_variant_data(suite), records),
        ),
        ("W&B", "the W&B summary run", lambda: write_wandb_summary(out, suite, suite_id, records)),
    ):
        print(f"writing {what} …", flush=True)
        started = time.perf_counter()
        write()
        seconds[stage] = time.perf_counter() - started
    failed = [r for r in records if r["status"] != "done"]
    print(
        f"report: {out / 'report.md'}; {len(records) - len(failed)} of {len(records)} runs done"
        + (f", {len(failed)} failed" if failed else "")
        + " ("
        + ", ".join(f"{stage} {s:.1f} s" for stage, s in seconds.items())
        + ")",
        flush=True,
    )
    if suite["wandb"]["mode"] == "offline":
        print(
            f"W&B runs are offline; upload them with: wandb sync {out}/runs/*/*/wandb/offline-run-* "
            f"{out}/wandb/offline-run-*",
            flush=True,
        )
    return 1 if failed else 0

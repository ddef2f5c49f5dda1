"""``ae-lightning compare SUITE.yaml``: train every (variant, seed) of a suite on identical data, judge them with
one evaluation battery, and compare them in W&B (one group) and in a local report.

Each run is its own process (``python -m ae_lightning.experiment RUN_DIR``), so a crash or an OOM in one cannot
take down the others and W&B runs never mix. With G GPUs visible to this process (the inherited
``CUDA_VISIBLE_DEVICES``: indices, UUIDs or MIG instances), G × K runs go in parallel, K per GPU
(``--runs-per-gpu K``, default 1; ``--ddp``: each run on all of them, one after another); on the CPU one at a time
(``--parallel N``: N at once). A suite whose ``trainer`` says ``{accelerator: cpu, strategy: ddp, devices: N}`` runs
each run as N gloo processes. CPU threads are shared out from the CPUs this process may use (its affinity,
``SLURM_CPUS_PER_TASK``). Results are written per run as soon as it finishes; re-running the same command with the
same ``--out`` skips finished runs.

Output directory::

    OUT/suite.json                    the resolved suite and its id (the W&B group)
    OUT/runs/<variant>/seed<s>/       one run: spec.json, log.txt, result.json, metrics.csv, checkpoints/, wandb/
    OUT/summary.json, summary.csv     one record per run: variant, seed, status, error, metrics
    OUT/report.md + *.png             the comparison
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import yaml

from ae_lightning.callbacks import CHECKPOINT_EVERY_N_STEPS
from ae_lightning.data import ImageDataModule, Noise
from ae_lightning.devices import parse_device, usable_cpus, visible_gpus
from ae_lightning.errors import ConfigError
from ae_lightning.evaluation.battery import EvaluationSettings
from ae_lightning.experiment import write_json_atomic
from ae_lightning.variants import VARIANTS

SUITE_KEYS = {
    "name",
    "description",
    "data",
    "trainer",
    "seeds",
    "evaluation",
    "variants",
    "wandb",
    "checkpoint_every_n_steps",
    "tuning",  # read by `ae-lightning tune` (ae_lightning.tuning)
}
# A variant: {model: NAME, args: {…}} (short), {class_path: …, init_args: {…}} (as LightningCLI writes a model), or
# {config: FILE} (a model config as `ae-lightning fit --config` takes; init_args beside it override its values).
VARIANT_KEYS = {"name", "model", "args", "class_path", "init_args", "config", "data", "trainer", "search", "objective"}
OVERRIDE_SECTIONS = ("data", "trainer", "evaluation", "wandb")  # compare --data.root DIR, --trainer.max_epochs 5…
WANDB_KEYS = {"mode", "project", "entity", "image_every_n_epochs"}
WANDB_MODES = ("auto", "online", "offline", "disabled")
TRAINER_KEYS = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self", "logger", "callbacks"}
EVALUATION_KEYS = {f.name for f in fields(EvaluationSettings)}
EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception|Interrupt)\b")  # the last line of a traceback


def check_keys(section: dict[str, Any], allowed: set[str], where: str) -> None:
    if not isinstance(section, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(section).__name__}: {section!r}")
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: {sorted(allowed)}")


@dataclass
class Run:
    variant: str
    seed: int
    spec: dict[str, Any]
    directory: Path
    index: int = 0
    result: dict[str, Any] = field(default_factory=dict)


def model_of(variant: dict[str, Any], suite_dir: Path, where: str) -> tuple[str, dict[str, Any]]:
    """(variant class name, its arguments) from any of the three ways a suite may write a variant."""
    forms = [form for form in ("model", "class_path", "config") if form in variant]
    if len(forms) != 1:
        raise ConfigError(f"{where}: give exactly one of 'model', 'class_path' or 'config' (got {forms or 'none'})")
    if forms == ["model"]:
        if "init_args" in variant:
            raise ConfigError(f"{where}: 'init_args' goes with 'class_path' or 'config'; with 'model' use 'args'")
        return variant["model"], dict(variant.get("args") or {})
    if "args" in variant:
        raise ConfigError(f"{where}: 'args' goes with 'model'; with '{forms[0]}' use 'init_args'")
    class_path, init_args = variant.get("class_path"), {}
    if forms == ["config"]:
        file = Path(variant["config"])
        file = file if file.is_file() or file.is_absolute() else suite_dir / file
        if not file.is_file():
            raise ConfigError(f"{where}: config={variant['config']!r}: no such file (relative to . or {suite_dir})")
        section = (yaml.safe_load(file.read_text()) or {}).get("model")
        if not isinstance(section, dict) or "class_path" not in section:
            raise ConfigError(f"{where}: {file} has no 'model: {{class_path: …, init_args: …}}' section")
        class_path, init_args = section["class_path"], dict(section.get("init_args") or {})
    name = str(class_path).rsplit(".", 1)[-1]
    if name not in VARIANTS:
        raise ConfigError(f"{where}: class_path={class_path!r} is not a variant; allowed: {sorted(VARIANTS)}")
    return name, {**init_args, **(variant.get("init_args") or {})}


def load_suite(path: Path, overrides: argparse.Namespace) -> dict[str, Any]:
    """Read, override and validate a suite file; every error names the key, the value and what is allowed."""
    if not path.is_file():
        raise ConfigError(f"suite file {str(path)!r} does not exist")
    try:
        suite = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"suite file {path} is not valid YAML: {err}") from None
    check_keys(suite, SUITE_KEYS, f"suite {path}")
    suite.setdefault("name", path.stem)
    suite["data"] = dict(suite.get("data") or {})
    suite["trainer"] = dict(suite.get("trainer") or {})
    suite["evaluation"] = dict(suite.get("evaluation") or {})
    suite["wandb"] = {"mode": "auto", "project": "ae-lightning", **(suite.get("wandb") or {})}
    if overrides.epochs is not None:
        suite["trainer"]["max_epochs"] = overrides.epochs
    if overrides.data_root is not None:
        suite["data"]["root"] = overrides.data_root
    if overrides.seeds is not None:
        suite["seeds"] = overrides.seeds
    if overrides.wandb is not None:
        suite["wandb"]["mode"] = overrides.wandb
    for key, value in getattr(overrides, "dotted", {}).items():  # --trainer.max_epochs 5 …, as in `fit`
        *parents, name = key.split(".")
        target = suite
        for parent in parents:  # --data.noise.level 0.5 reaches into data.noise
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                raise ConfigError(f"--{key}: {parent!r} is not a mapping in this suite")
        target[name] = value
    suite.setdefault("seeds", [0])
    if (
        not isinstance(suite["seeds"], list)
        or not suite["seeds"]
        or not all(isinstance(s, int) for s in suite["seeds"])
    ):
        raise ConfigError(f"suite {path}: seeds={suite['seeds']!r} must be a non-empty list of integers")
    check_keys(suite["trainer"], TRAINER_KEYS, f"suite {path}: trainer")
    check_keys(suite["evaluation"], EVALUATION_KEYS, f"suite {path}: evaluation")
    check_keys(suite["wandb"], WANDB_KEYS, f"suite {path}: wandb")
    if suite["wandb"]["mode"] not in WANDB_MODES:
        raise ConfigError(f"wandb.mode={suite['wandb']['mode']!r}; allowed: {list(WANDB_MODES)}")
    variants = suite.get("variants")
    if not variants or not isinstance(variants, list):
        raise ConfigError(
            f"suite {path} has no variants: add a list under 'variants', each with a 'model' "
            f"(one of {sorted(VARIANTS)})"
        )
    names = set()
    for number, variant in enumerate(variants):
        where = f"suite {path}: variants[{number}]"
        check_keys(variant, VARIANT_KEYS, where)
        model, model_args = model_of(variant, path.parent, where)
        if model not in VARIANTS:
            raise ConfigError(f"{where}: model={model!r} is not a variant; allowed: {sorted(VARIANTS)}")
        variant.update(model=model, args=model_args)
        for form in ("class_path", "init_args", "config"):
            variant.pop(form, None)
        variant.setdefault("name", variant["model"])
        if variant["name"] in names:
            raise ConfigError(f"{where}: name {variant['name']!r} is used twice; give each variant its own name")
        names.add(variant["name"])
        check_keys(variant.get("trainer") or {}, TRAINER_KEYS, f"{where}.trainer")
        data = {**suite["data"], **(variant.get("data") or {})}
        try:  # build the data module and the model once here, so a typo fails now, not hours into the suite
            datamodule = ImageDataModule(**data)
            VARIANTS[variant["model"]](input_shape=datamodule.image_shape, **(variant.get("args") or {}))
        except (ConfigError, TypeError) as err:  # TypeError: an argument the variant does not take
            raise ConfigError(f"{where} ({variant['name']}): {err}") from None
    if overrides.only:
        unknown = sorted(set(overrides.only) - names)
        if unknown:
            raise ConfigError(f"--only {unknown[0]!r} is not a variant of this suite; allowed: {sorted(names)}")
        suite["variants"] = [v for v in variants if v["name"] in overrides.only]
    noise = suite["evaluation"].get("noise") or suite["data"].get("noise") or {"kind": "gaussian", "level": 0.3}
    Noise(**noise)
    if suite["evaluation"].get("device") is not None:
        parse_device(suite["evaluation"]["device"], "evaluation.device")
    suite["evaluation"]["noise"] = noise
    return suite


def selection_objective(objective: Any) -> dict[str, str]:
    """``{metric, direction}`` of a variant's objective as a suite may write it (a metric name, or a mapping)."""
    if objective is None:
        return {"metric": "val/loss", "direction": "minimize"}
    if isinstance(objective, str):
        return {"metric": objective, "direction": "minimize"}
    return {"direction": "minimize", **objective}


def run_spec(suite: dict[str, Any], suite_id: str, variant: dict[str, Any], seed: int) -> dict[str, Any]:
    """What one run of ``variant`` trains (its spec.json): the suite's sections with the variant's on top."""
    return {
        "suite_id": suite_id,
        "suite_name": suite["name"],
        "variant": variant["name"],
        "model": variant["model"],
        "model_args": variant.get("args") or {},
        "seed": seed,
        "data": {**suite["data"], **(variant.get("data") or {})},
        "trainer": {"accelerator": "auto", "devices": 1, **suite["trainer"], **(variant.get("trainer") or {})},
        "wandb": suite["wandb"],
        "checkpoint_every_n_steps": suite.get("checkpoint_every_n_steps", CHECKPOINT_EVERY_N_STEPS),
        # the validation metric that picks the checkpoint the battery judges: the variant's objective where it has
        # one (a tuned variant: the objective its trials were valued on), else val/loss
        "select_on": selection_objective(variant.get("objective")),
    }


def plan_runs(suite: dict[str, Any], suite_id: str, out: Path, ddp: bool) -> list[Run]:
    runs = []
    for variant in suite["variants"]:
        for seed in suite["seeds"]:
            spec = run_spec(suite, suite_id, variant, seed)
            if ddp:
                spec["trainer"].update(devices=-1, strategy="ddp")
            spec["evaluation"] = {**suite["evaluation"], "noise_seed": suite["data"].get("seed", 0)}
            directory = out / "runs" / variant["name"] / f"seed{seed}"
            runs.append(Run(variant["name"], seed, spec, directory, index=len(runs) + 1))
    return runs


def resolve_wandb_mode(mode: str) -> str:
    """``auto``: online when logged in, offline otherwise (sync later with ``wandb sync``)."""
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE") in ("offline", "disabled", "online"):
        return os.environ["WANDB_MODE"]
    try:
        import wandb

        logged_in = bool(os.environ.get("WANDB_API_KEY") or wandb.api.api_key)
    except Exception:
        logged_in = False
    return "online" if logged_in else "offline"


def processes_per_run(trainer: dict[str, Any], gpus: int) -> int:
    """How many processes one run starts, to share the slot's CPU threads among: under DDP one per device (``devices:
    N``, or every one of the slot's ``gpus`` for ``devices: -1``), else 1."""
    if "ddp" not in str(trainer.get("strategy", "")):
        return 1
    devices = trainer.get("devices", 1)
    if devices == -1:
        return max(1, gpus)
    return devices if isinstance(devices, int) and devices > 1 else 1


class Slots:
    """Where runs go, each slot holding one run at a time: ``runs_per_gpu`` slots on each GPU of ``gpus`` (their
    ``CUDA_VISIBLE_DEVICES`` entries, spread over the GPUs first), one slot with every GPU under ``ddp``, else
    ``parallel`` CPU slots. The ``cpus`` this process may use are shared out as threads among the slots."""

    def __init__(self, gpus: list[str], ddp: bool, parallel: int, runs_per_gpu: int = 1, cpus: int = 1) -> None:
        if gpus and not ddp:
            self.envs = [{"CUDA_VISIBLE_DEVICES": gpu} for _ in range(runs_per_gpu) for gpu in gpus]
        elif gpus:
            self.envs = [{"CUDA_VISIBLE_DEVICES": ",".join(gpus)}]
        else:
            self.envs = [{} for _ in range(parallel)]
        self.threads = max(1, cpus // len(self.envs))
        self.free = list(range(len(self.envs)))

    def env(self, slot: int, trainer: dict[str, Any]) -> dict[str, str]:
        """The environment of a run in ``slot`` with these trainer settings (threads split among its processes)."""
        gpus = len([g for g in self.envs[slot].get("CUDA_VISIBLE_DEVICES", "").split(",") if g])
        threads = str(max(1, self.threads // processes_per_run(trainer, gpus)))
        return {**self.envs[slot], "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


def result_of(run: Run) -> dict[str, Any] | None:
    path = run.directory / "result.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def short_scores(metrics: dict[str, Any]) -> str:
    keys = ("test/mse", "test/noisy_psnr", "probe/accuracy", "test/nll_iw", "fit/seconds")
    return "  ".join(f"{k} {metrics[k]:.4g}" for k in keys if isinstance(metrics.get(k), (int, float)))


def stream(process: subprocess.Popen, prefix: str, log_path: Path) -> None:
    """Copy a run's output to its log file and, prefixed, to the console."""
    with open(log_path, "a") as log:
        for line in process.stdout:
            log.write(line)
            log.flush()
            if line.startswith(("epoch ", "warning", "Traceback")) or EXCEPTION_LINE.match(line):
                print(f"{prefix} {line.rstrip()}", flush=True)


def execute(runs: list[Run], slots: Slots, total: int) -> bool:
    """Run every pending run, ``len(slots.envs)`` at a time, each in its own process. SIGUSR1 (SLURM's warning
    before preemption) and SIGTERM are passed on to the runs; after SIGTERM no new run starts and the function
    returns True (interrupted), leaving every unfinished run to resume from its checkpoint next time."""
    pending, active = list(runs), []
    stopping = []

    def forward(signum, frame):
        if signum == signal.SIGTERM:
            stopping.append(signum)
        for entry in active:
            entry[2].send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGUSR1, signal.SIGTERM)}
    try:
        return _execute(pending, active, slots, total, stopping)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _execute(pending: list[Run], active: list, slots: Slots, total: int, stopping: list) -> bool:
    while (pending and not stopping) or active:
        while pending and slots.free and not stopping:
            run, slot = pending.pop(0), slots.free.pop(0)
            run.directory.mkdir(parents=True, exist_ok=True)
            write_json_atomic(run.directory / "spec.json", run.spec)
            (run.directory / "result.json").unlink(missing_ok=True)
            prefix = f"[{run.index}/{total} {run.variant} seed {run.seed}]"
            print(f"{prefix} started ({'slot ' + str(slot)})", flush=True)
            env = {**os.environ, **slots.env(slot, run.spec["trainer"]), "PYTHONUNBUFFERED": "1"}
            process = subprocess.Popen(
                [sys.executable, "-m", "ae_lightning.experiment", str(run.directory)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
            reader = threading.Thread(target=stream, args=(process, prefix, run.directory / "log.txt"), daemon=True)
            reader.start()
            active.append((run, slot, process, reader, prefix, time.perf_counter()))
        time.sleep(0.2)
        for entry in list(active):
            run, slot, process, reader, prefix, started = entry
            if process.poll() is None:
                continue
            reader.join()
            active.remove(entry)
            slots.free.append(slot)
            if stopping:
                print(f"{prefix} stopped by SIGTERM; it resumes from its checkpoint next time", flush=True)
                continue
            run.result = result_of(run) or {}
            if process.returncode == 0 and run.result.get("status") == "done":
                print(
                    f"{prefix} done in {time.perf_counter() - started:.0f} s: {short_scores(run.result['metrics'])}",
                    flush=True,
                )
                continue
            error = run.result.get("error") or describe_exit(process.returncode, run.directory / "log.txt")
            run.result = {"status": "failed", "error": error}
            write_json_atomic(run.directory / "result.json", run.result)
            print(f"{prefix} FAILED: {error} (log: {run.directory / 'log.txt'})", flush=True)
    return bool(stopping)


def describe_exit(returncode: int, log_path: Path) -> str:
    if returncode < 0:
        return f"killed by signal {-returncode}" + (" (out of memory?)" if returncode == -9 else "")
    tail = log_path.read_text().strip().splitlines()[-1:] if log_path.is_file() else []
    return f"exit code {returncode}" + (f": {tail[0]}" if tail else "")


def records_of(runs: list[Run]) -> list[dict[str, Any]]:
    records = []
    for run in runs:
        result = run.result or result_of(run) or {"status": "not run", "error": None}
        records.append(
            {
                "variant": run.variant,
                "model": run.spec["model"],
                "seed": run.seed,
                "status": result.get("status"),
                "error": result.get("error"),
                "metrics": result.get("metrics", {}),
                "run_dir": str(run.directory),
            }
        )
    return records


def suite_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options ``compare`` and ``tune`` share: what to run, where, and on what."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("suite", type=Path, help="suite YAML file, e.g. experiments/quick.yaml")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: results/<suite name>)")
    parser.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs (= --trainer.max_epochs)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="override the suite's seeds")
    parser.add_argument("--data-root", default=None, help="override data.root (= --data.root)")
    parser.add_argument("--only", nargs="+", default=None, help="run only these variants (by name)")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once on CPU (default 1)")
    parser.add_argument("--ddp", action="store_true", help="with GPUs: each run on all GPUs (DDP), one after another")
    parser.add_argument(
        "--runs-per-gpu",
        type=int,
        default=1,
        help="runs sharing each GPU at once (default 1): small models (MNIST MLPs) use a fraction of a GPU",
    )
    parser.add_argument("--wandb", choices=WANDB_MODES, default=None, help="W&B mode (default: the suite's, auto)")
    parser.add_argument("--report-only", action="store_true", help="write summary and report from finished runs")
    parser.epilog = (
        "Any suite key can be overridden with the dotted keys of `ae-lightning fit`: --data.KEY VALUE, "
        "--trainer.KEY VALUE, --evaluation.KEY VALUE, --wandb.KEY VALUE (values read as YAML)."
    )
    return parser


def parse_suite_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse and check the shared options; any other ``--section.key value`` is a dotted suite override."""
    args, rest = parser.parse_known_args(argv)
    args.dotted = parse_dotted(rest)
    if args.parallel < 1:
        raise ConfigError(f"--parallel {args.parallel}: must be >= 1")
    if args.runs_per_gpu < 1:
        raise ConfigError(f"--runs-per-gpu {args.runs_per_gpu}: must be >= 1")
    if args.ddp and args.runs_per_gpu > 1:
        raise ConfigError(
            f"--runs-per-gpu {args.runs_per_gpu} with --ddp: a DDP run takes every GPU; use one or the other"
        )
    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs {args.epochs}: must be >= 1")
    return args


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


def parse_dotted(rest: list[str]) -> dict[str, Any]:
    """``--trainer.max_epochs 5 --data.root=/data`` → ``{"trainer.max_epochs": 5, "data.root": "/data"}``."""
    dotted, items = {}, list(rest)
    while items:
        item = items.pop(0)
        key, separator, value = item[2:].partition("=") if item.startswith("--") else ("", "", "")
        if key.split(".", 1)[0] not in OVERRIDE_SECTIONS or "." not in key:
            allowed = ", ".join(f"--{section}.KEY" for section in OVERRIDE_SECTIONS)
            raise ConfigError(f"unrecognized argument {item!r}; compare takes its own options and {allowed}")
        if not separator:
            if not items:
                raise ConfigError(f"{item} needs a value")
            value = items.pop(0)
        dotted[key] = yaml.safe_load(value)
    return dotted


def check_ddp(args: argparse.Namespace, gpus: list[str]) -> None:
    if args.ddp and not gpus:
        raise ConfigError(
            "--ddp runs each run on all GPUs, but this process sees none "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}, torch.cuda.device_count()=0). "
            "For DDP on CPU processes give the suite trainer: {accelerator: cpu, strategy: ddp, devices: 2}"
        )


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
    suite = load_suite(args.suite, args)
    out = args.out or Path("results") / suite["name"]
    gpus = visible_gpus(os.environ, torch.cuda.device_count())
    if args.count:  # for sizing a SLURM array
        print(len(suite["variants"]) * len(suite["seeds"]))
        return 0
    check_ddp(args, gpus)
    return run_suite(suite, args, out, gpus)


def run_suite(suite: dict[str, Any], args: argparse.Namespace, out: Path, gpus: list[str]) -> int:
    """Train and judge every (variant, seed) not yet done in OUT, then write the summary and the report."""
    from ae_lightning.evaluation.baseline import write_pixel_baseline
    from ae_lightning.evaluation.report import write_report, write_wandb_summary

    suite_id = establish_suite(out, suite)
    runs = plan_runs(suite, suite_id, out, args.ddp)
    task_index = getattr(args, "task_index", None)
    if task_index is not None:
        if not 0 <= task_index < len(runs):
            raise ConfigError(f"--task-index {task_index}: this suite has runs 0 to {len(runs) - 1}")
        runs = [runs[task_index]]
    finished = [r for r in runs if (result_of(r) or {}).get("status") == "done"]
    for run in finished:
        print(f"[{run.index}/{len(runs)} {run.variant} seed {run.seed}] already done, skipped", flush=True)
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
    interrupted = execute(pending, slots, len(runs))
    if interrupted:  # SIGTERM (preemption, scancel): leave the runs to resume; record nothing as failed
        return 128 + signal.SIGTERM
    records = records_of(runs)
    if task_index is not None:  # one array task: the report job assembles the suite
        return 0 if records[0]["status"] == "done" else 1
    write_json_atomic(out / "summary.json", records)
    write_pixel_baseline(out, suite)
    write_report(out, suite, records)
    write_wandb_summary(out, suite, suite_id, records)
    failed = [r for r in records if r["status"] != "done"]
    print(
        f"report: {out / 'report.md'}; {len(records) - len(failed)} of {len(records)} runs done"
        + (f", {len(failed)} failed" if failed else ""),
        flush=True,
    )
    if suite["wandb"]["mode"] == "offline":
        print(
            f"W&B runs are offline; upload them with: wandb sync {out}/runs/*/*/wandb/offline-run-* "
            f"{out}/wandb/offline-run-*",
            flush=True,
        )
    return 1 if failed else 0

"""``ae-lightning tune SUITE.yaml --out DIR``: tune every variant of a suite at the same budget with Optuna, on the
validation split only, then train each variant's best configuration over the suite's seeds and judge it with the
battery on the test split, exactly as ``compare`` does.

A suite declares what to tune::

    tuning:
      budget_epochs: 16          # per variant, alike for every variant: trials run until their epochs reach it
      epochs: 2                  # per trial (and the final runs', unless trainer.max_epochs says otherwise)
      objective: {metric: val/mse, direction: minimize}   # a validation metric every run logs
      sampler: tpe               # tpe | random
      startup_trials: 3          # tpe: trials sampled at random before the model takes over (default below)
      pruner: median             # median | none: stops trials whose epoch-wise value trails the median
      pruner_warmup_epochs: 1    # no trial is pruned in its first epochs (default: a third of `epochs`)
      seed: 0                    # seeds the trials' training seeds and the samplers (never a final seed)
      search:                    # knobs every variant tunes (e.g. the learning rate)
        learning_rate: {kind: float, low: 3.0e-4, high: 3.0e-3, log: true}
    variants:
      - name: CAE
        model: ContractiveAutoencoder
        search:                  # the variant's own knobs: its init arguments, or data.* keys
          contractive_weight: {kind: float, low: 1.0e-5, high: 1.0e-1, log: true}
      - name: DAE
        model: DenoisingAutoencoder
        search: {data.noise.level: {kind: float, low: 0.1, high: 0.7}}

Kinds: ``float`` and ``int`` (``low`` < ``high``, optional ``log: true``), ``categorical`` (``choices: [...]``).

The study of each variant lives in ``OUT/tuning/study.journal`` (Optuna's journal file storage): re-running the
command continues it (a trial whose process died is run again with the same parameters), and several processes —
``--parallel N``, one per GPU, or SLURM array tasks running ``tune --tune-only`` (scripts/slurm/tune.sbatch) — work
on one study at once.

The budget is compute, not a count of trials: every variant trains ``budget_epochs`` epochs in all. A trial
reserves ``epochs`` when it starts; a pruned trial gives back the epochs it did not train, which fund further
trials; a trial that fails while training counts the epochs it trained. A trial starts only where its full
``epochs`` still fit, so each variant ends within one trial's epochs of the budget, and tuning.json says exactly how
many epochs each trained. A trial's value is the best epoch's value of its objective — the epoch whose checkpoint a
final run keeps, since final runs select their checkpoint on the same objective. Trials train with seeds drawn from
their own stream (``seeding``), never one of the suite's final seeds: no final run repeats a trial. Options of a
variant that change the compute of a trial (its own ``trainer`` section, or ``data.batch_size``/``val_size``) are
refused unless they are search knobs.

Output: ``OUT/tuning.json`` (``{variant: {best_params, best_value, trials, pruned, failed, epochs_trained,
trial_seeds, history}}``, the sampler as it ran),
``OUT/tuning/<variant>/trial<n>/`` (each trial's metrics.csv and W&B run, group ``<suite id>-tune``, job_type
``tune``), then everything ``compare`` writes, with a tuning section in ``report.md``.

(Over 400 lines on purpose: a study's whole life — budget accounting, trials, processes sharing and reclaiming a
study, the summary — is one story, and its budget rules are read in one place.)
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytorch_lightning as pl
import torch
import yaml
from optuna.trial import TrialState
from pytorch_lightning.loggers import Logger

from ae_lightning.callbacks import EpochLine
from ae_lightning.devices import usable_cpus, visible_gpus
from ae_lightning.errors import ConfigError
from ae_lightning.files import atomic_path, write_json_atomic
from ae_lightning.loggers import RunCSVLogger
from ae_lightning.seeding import derive_seed
from ae_lightning.suite.compare import check_ddp, establish_suite, run_suite
from ae_lightning.suite.config import load_suite, parse_suite_args, run_spec, suite_parser
from ae_lightning.suite.launch import Slots
from ae_lightning.suite.preflight import check_suite_data
from ae_lightning.suite.run import build_run, make_wandb_logger, run_config, run_info
from ae_lightning.suite.search import PRUNERS, SAMPLERS, apply_params, load_tuning


def trial_seed(tuning_seed: int, number: int, final_seeds: list[int]) -> int:
    """The training seed of trial ``number``: from the 'trial' stream of the tuning seed, in seed_everything's range,
    and never one of the suite's final seeds (a final run must not repeat a trial, selected on validation)."""
    index = number
    while True:
        seed = derive_seed(tuning_seed, "trial", index) % 2**32
        if seed not in final_seeds:
            return seed
        index += 10**9  # vanishingly rare: step to a far index of the same stream


class OptunaPruning(pl.Callback):
    """Reports the objective to the trial after every validation epoch and stops the fit when Optuna's pruner says
    the trial is hopeless. (optuna-integration's callback binds the ``lightning`` package, not
    ``pytorch_lightning``.)"""

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial, self.metric, self.values = trial, metric, []
        self.last_heartbeat = time.time()

    def beat(self) -> None:
        """Tell processes sharing the study this trial is alive (they reclaim trials silent too long)."""
        self.last_heartbeat = time.time()
        self.trial.set_user_attr("heartbeat", self.last_heartbeat)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if time.time() - self.last_heartbeat > 60:  # long epochs: a heartbeat a minute, not only per epoch
            self.beat()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        if self.metric not in metrics:
            logged = sorted(k for k in metrics if k.startswith("val/"))
            raise ConfigError(
                f"tuning.objective.metric={self.metric!r} is not logged by {type(pl_module).__name__}; "
                f"it logs: {logged}"
            )
        value = float(metrics[self.metric])
        self.values.append(value)
        # what the budget counts, kept in the study at once (a trial whose process dies still says what it used)
        self.trial.set_user_attr("epochs_trained", trainer.current_epoch + 1)
        self.trial.report(value, step=trainer.current_epoch)
        self.beat()
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"epoch {trainer.current_epoch}: {self.metric} {value:.4g}")


UNCLAIMED_AFTER_S = 60.0  # a live process names itself on a trial as soon as Optuna's ask (sampling too) returns
WAIT_POLL_S = 2.0  # how often a process waiting on an unclaimed trial reads the study again


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def is_unclaimed(trial: optuna.trial.FrozenTrial) -> bool:
    """A running trial no process has named itself on (yet): one asks for a trial, then names itself."""
    return trial.state == TrialState.RUNNING and "worker" not in trial.user_attrs


def is_stale(trial: optuna.trial.FrozenTrial, stale_after_s: float) -> bool:
    """A running trial whose process is gone: dead on this host, silent (no heartbeat, sent every minute while it
    trains) for ``stale_after_s`` — a process on another host that was killed or preempted — or unclaimed for
    ``UNCLAIMED_AFTER_S``: its process was killed between asking for it and naming itself."""
    started = trial.datetime_start.timestamp() if trial.datetime_start else 0
    if is_unclaimed(trial):
        return time.time() - started > UNCLAIMED_AFTER_S
    host, _, pid = str(trial.user_attrs["worker"]).rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
    heartbeat = trial.user_attrs.get("heartbeat", started)
    return time.time() - heartbeat > stale_after_s


def epochs_used(trial: optuna.trial.FrozenTrial, epochs: int) -> int:
    """Epochs a counted trial takes from the budget: those it trained once finished, all ``epochs`` while running."""
    if trial.state == TrialState.RUNNING:
        return epochs
    return int(trial.user_attrs.get("epochs_trained", 0))


def counts(trial: optuna.trial.FrozenTrial, stale_after_s: float) -> bool:
    """Whether a trial uses the budget: finished (complete, pruned, or failed while training) or running live.
    Trials over the budget, abandoned by a dead process, or stopped by a configuration error do not."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    if trial.state == TrialState.FAIL:
        return bool(trial.user_attrs.get("failed_in_training"))
    return trial.state == TrialState.RUNNING and not is_stale(trial, stale_after_s)


def epochs_taken(trials: list[optuna.trial.FrozenTrial], epochs: int, stale_after_s: float) -> int:
    """Epochs the counted ones of ``trials`` have taken from the budget (a running one: all its ``epochs``)."""
    return sum(epochs_used(t, epochs) for t in trials if counts(t, stale_after_s))


def next_move(trials: list[optuna.trial.FrozenTrial], epochs: int, budget: int, stale_after_s: float) -> str:
    """What a process does next on a study: ``"run"`` a trial where its full ``epochs`` fit after the counted trials
    (running ones reserve all their epochs), else ``"done"``: the live process running a trial comes back to the
    study when it ends and uses any epochs a pruned trial gave back (a dead one's trial is stale at once on this host;
    from another host it counts until its heartbeat is ``stale_after_s`` old: if every other process has left by
    then, the study stays a trial short until a later run reclaims it). But where a running trial is unclaimed,
    ``"wait"``: its process may have died before naming itself, and it is stale within ``UNCLAIMED_AFTER_S``."""
    if epochs_taken(trials, epochs, stale_after_s) + epochs <= budget:
        return "run"
    return "wait" if any(is_unclaimed(t) and counts(t, stale_after_s) for t in trials) else "done"


def reclaim_stale(study: optuna.Study, stale_after_s: float) -> None:
    """Queue the parameters of trials whose processes died to run again, then close those trials. Queued first: a
    process reading the study in between finds them waiting, not a free slot that a new trial would take. Processes
    reclaiming one trial at once may each queue it: only the first copy runs, and none where the trial's process
    finished it after all (judged dead, it was not) — ``run_asked_trial``."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if is_stale(trial, stale_after_s):
            study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number}, skip_if_exists=False)
            try:
                study.tell(trial.number, state=TrialState.FAIL)
            except (RuntimeError, ValueError):  # another process closed it first
                continue
            print(f"  trial {trial.number} was left running by a process that died; it runs again", flush=True)


def open_study(out: Path, variant: str, tuning: dict[str, Any], worker_index: int) -> optuna.Study:
    from optuna.storages.journal import JournalFileBackend

    path = out / "tuning" / "study.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(
        study_name=variant,
        storage=storage,
        load_if_exists=True,
        direction=tuning["objectives"][variant]["direction"],
        pruner=PRUNERS[tuning["pruner"]](tuning),
    )
    # Each process, and each restart of one, draws its own stream (seeded by the tuning seed, the worker and the
    # trials so far): processes sharing a study, or a re-run continuing it, do not propose the points already tried.
    started = len(study.get_trials(deepcopy=False))
    study.sampler = SAMPLERS[tuning["sampler"]](
        derive_seed(tuning["seed"], "sampler", worker_index, started) % 2**32, tuning["startup_trials"]
    )
    return study


def trial_spec(
    suite: dict[str, Any], suite_id: str, variant: dict[str, Any], tuning: dict[str, Any], seed: int
) -> dict:
    """A trial's run spec, as ``plan_runs`` writes a run's: one device, the trial's seed and epochs, and a data
    module that never reads (nor decodes) the test split."""
    spec = run_spec(suite, suite_id, variant, seed)
    spec["data"]["read_test"] = False
    spec["trainer"].update(devices=1, max_epochs=tuning["epochs"], enable_model_summary=False)
    spec["trainer"].pop("strategy", None)  # a trial runs in this process; several GPUs serve several trials at once
    spec["checkpoint_every_n_steps"] = 10**9  # a trial that dies runs again from the start
    return spec


def run_trial(
    trial: optuna.Trial, suite: dict[str, Any], suite_id: str, variant: dict[str, Any], tuning: dict, out: Path
) -> float:
    seed = trial_seed(tuning["seed"], trial.number, suite["seeds"])
    trial.set_user_attr("seed", seed)
    spec = trial_spec(suite, suite_id, apply_params(variant, trial.params, suite["data"]), tuning, seed)
    directory = out / "tuning" / variant["name"] / f"trial{trial.number}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    config = run_config(spec)
    with atomic_path(directory / "config.yaml") as partial:
        partial.write_text(yaml.safe_dump(config, sort_keys=False))
    loggers: list[Logger] = [RunCSVLogger(str(directory), name="", version="")]
    wandb_logger = make_wandb_logger(
        {**run_info(spec), "params": trial.params},
        directory,
        "tune",
        f"{suite_id}-tune",
        f"{variant['name']}-trial{trial.number}",
        config=config,
    )
    if wandb_logger is not None:
        loggers.append(wandb_logger)
    pruning = OptunaPruning(trial, tuning["objectives"][variant["name"]]["metric"])
    cli = build_run(config, directory, loggers, [pruning, EpochLine()])
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    finally:
        shutil.rmtree(directory / "checkpoints", ignore_errors=True)  # trials keep their metrics, not their weights
        if wandb_logger is not None:  # the next trial's logger would otherwise attach to this W&B run
            try:
                import wandb

                wandb.finish()
            except Exception:
                pass
    if not pruning.values:
        raise RuntimeError("the trial logged no validation value (is data.val_size 0?)")
    # the best epoch's value: the epoch whose checkpoint a final run keeps (it selects on this objective)
    pick = min if tuning["objectives"][variant["name"]]["direction"] == "minimize" else max
    return pick(pruning.values)


def tune_variant(
    suite: dict[str, Any], suite_id: str, variant: dict[str, Any], tuning: dict, out: Path, worker_index: int
) -> None:
    """Run trials of this variant's study until its budget is used, by this process and any others on it."""
    space = tuning["spaces"][variant["name"]]
    if not space:
        print(f"{variant['name']}: no search space; trained with its suite settings", flush=True)
        return
    study = open_study(out, variant["name"], tuning, worker_index)
    stale_after_s = tuning["stale_after_minutes"] * 60
    budget, epochs = tuning["budget_epochs"], tuning["epochs"]
    polls_waited = 0
    while True:
        reclaim_stale(study, stale_after_s)
        move = next_move(study.get_trials(deepcopy=False), epochs, budget, stale_after_s)
        if move == "done":
            return  # a full trial no longer fits
        if move == "wait":
            polls_waited += 1
            if polls_waited == 2:  # not for a live process's trial in the instant between asking and naming itself
                print(f"{variant['name']}: a trial no process has claimed; waiting up to a minute for it", flush=True)
            time.sleep(WAIT_POLL_S)
            continue
        polls_waited = 0
        trial = study.ask(space)
        try:
            run_asked_trial(study, trial, suite, suite_id, variant, tuning, out)
        except optuna.exceptions.UpdateFinishedTrialError:
            # another process closed it, judging it abandoned (unclaimed for a minute, or silent for
            # stale_after_minutes), and queued its parameters again: this process goes on with the study
            print(
                f"{variant['name']} trial {trial.number} was closed by another process that judged it abandoned",
                flush=True,
            )


def tell(study: optuna.Study, trial: optuna.Trial, *args: Any, **kwargs: Any) -> None:
    """``study.tell``; for a trial another process has closed meanwhile it raises what every other write to one
    raises (``UpdateFinishedTrialError``, which ``tune_variant`` goes on from), not ``tell``'s ``ValueError``."""
    try:
        study.tell(trial, *args, **kwargs)
    except ValueError as err:
        if study.get_trials(deepcopy=False)[trial.number].state.is_finished():
            raise optuna.exceptions.UpdateFinishedTrialError(f"trial {trial.number} was closed: {err}") from err
        raise


def run_asked_trial(
    study: optuna.Study, trial: optuna.Trial, suite: dict, suite_id: str, variant: dict, tuning: dict, out: Path
) -> None:
    """Name this process on a trial it has just asked for, then run it if the budget has room (and it is not a
    second copy of a reclaimed trial), and tell the study how it ended."""
    stale_after_s = tuning["stale_after_minutes"] * 60
    budget, epochs = tuning["budget_epochs"], tuning["epochs"]
    trial.set_user_attr("worker", worker_name())
    trial.set_user_attr("heartbeat", time.time())
    trials = study.get_trials(deepcopy=False)  # in number order: trials[n] is trial n
    rerun_of = trial.user_attrs.get("rerun_of")
    if rerun_of is not None:
        first_copy = min(t.number for t in trials if t.user_attrs.get("rerun_of") == rerun_of)
        if first_copy < trial.number or counts(trials[rerun_of], stale_after_s):
            tell(study, trial, state=TrialState.FAIL)  # a second copy, or its trial's process finished it after all
            return
    # Trial numbers are handed out atomically: trials in number order take their epochs from the budget, and a
    # trial that does not fit after those before it (another process took the last epochs) does not run.
    if epochs_taken(trials[: trial.number], epochs, stale_after_s) + epochs > budget:
        tell(study, trial, state=TrialState.FAIL)  # over the budget; not counted
        return
    print(f"{variant['name']} trial {trial.number}: {trial.params}", flush=True)
    try:
        value = run_trial(trial, suite, suite_id, variant, tuning, out)
    except optuna.TrialPruned as pruned:
        print(f"{variant['name']} trial {trial.number} pruned at {pruned}", flush=True)
        tell(study, trial, state=TrialState.PRUNED)
        return
    except ConfigError:
        tell(study, trial, state=TrialState.FAIL)  # not counted: the suite is wrong, not the trial
        raise
    except optuna.exceptions.UpdateFinishedTrialError:
        raise  # closed by another process while training (see tune_variant), not a failure of the trial
    except Exception as err:
        print(f"{variant['name']} trial {trial.number} FAILED: {type(err).__name__}: {err}", flush=True)
        trial.set_user_attr("failed_in_training", f"{type(err).__name__}: {err}")
        if "epochs_trained" not in trial.user_attrs:
            trial.set_user_attr("epochs_trained", 1)  # failed in its first epoch: that epoch was spent
        tell(study, trial, state=TrialState.FAIL)
        return
    if not math.isfinite(value):
        trial.set_user_attr("failed_in_training", f"objective {value}")
        tell(study, trial, state=TrialState.FAIL)
        return
    tell(study, trial, value)
    metric = tuning["objectives"][variant["name"]]["metric"]
    print(f"{variant['name']} trial {trial.number}: {metric} {value:.5g}", flush=True)


def budget_left(suite: dict[str, Any], tuning: dict, out: Path) -> bool:
    """Whether some variant's study still has room for a trial (as ``tune_variant`` counts it): a re-run of a
    finished study with ``--parallel N`` starts no worker processes only to find nothing to do."""
    stale_after_s = tuning["stale_after_minutes"] * 60
    for variant in suite["variants"]:
        if not tuning["spaces"][variant["name"]]:
            continue
        trials = open_study(out, variant["name"], tuning, 0).get_trials(deepcopy=False)
        if next_move(trials, tuning["epochs"], tuning["budget_epochs"], stale_after_s) != "done":
            return True
    return False


def wait_until_finished(suite: dict[str, Any], tuning: dict, out: Path) -> None:
    """Wait for trials other processes are still running (their results decide the best configuration)."""
    stale_after_s = tuning["stale_after_minutes"] * 60
    for variant in suite["variants"]:
        if not tuning["spaces"][variant["name"]]:
            continue
        study = open_study(out, variant["name"], tuning, 0)
        while any(t.state == TrialState.RUNNING and counts(t, stale_after_s) for t in study.get_trials(deepcopy=False)):
            time.sleep(5)


def summarise(suite: dict[str, Any], tuning: dict, out: Path) -> dict[str, Any]:
    """tuning.json: per variant the best parameters and value, the trials counted, pruned and failed, and every
    counted trial (number, state, value, parameters, epoch values) for the report's figures."""
    stale_after_s = tuning["stale_after_minutes"] * 60
    summary = {}
    for variant in suite["variants"]:
        space = tuning["spaces"][variant["name"]]
        if not space:
            summary[variant["name"]] = {
                "best_params": {},
                "best_value": None,
                "trials": 0,
                "pruned": 0,
                "failed": 0,
                "epochs_trained": 0,
                "trial_seeds": [],
                "objective": tuning["objectives"][variant["name"]],
            }
            continue
        study = open_study(out, variant["name"], tuning, 0)
        trials = [t for t in study.get_trials(deepcopy=False) if counts(t, stale_after_s)]
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        entry: dict[str, Any] = {
            "objective": tuning["objectives"][variant["name"]],
            "best_params": study.best_params if complete else None,
            "best_value": study.best_value if complete else None,
            "trials": len(trials),
            "pruned": sum(t.state == TrialState.PRUNED for t in trials),
            "failed": sum(t.state == TrialState.FAIL for t in trials),
            "epochs_trained": sum(epochs_used(t, tuning["epochs"]) for t in trials),
            "trial_seeds": [t.user_attrs.get("seed") for t in sorted(trials, key=lambda t: t.number)],
            "main_knob": next(iter(variant.get("search") or space)),
            "history": [
                {
                    "number": t.number,
                    "state": t.state.name.lower(),
                    "value": t.value,
                    "params": t.params,
                    "seed": t.user_attrs.get("seed"),
                    "epochs_trained": epochs_used(t, tuning["epochs"]),
                    "epoch_values": [t.intermediate_values[k] for k in sorted(t.intermediate_values)],
                }
                for t in sorted(trials, key=lambda t: t.number)
            ],
        }
        summary[variant["name"]] = entry
    return {
        "objective": tuning["objective"],
        "budget": {"budget_epochs": tuning["budget_epochs"], "epochs": tuning["epochs"]},
        "sampler": sampler_as_run(tuning, summary),
        "pruner": {
            "name": tuning["pruner"],
            "warmup_epochs": tuning["pruner_warmup_epochs"],
            "startup_trials": tuning["pruner_startup_trials"],
        },
        "variants": summary,
    }


def sampler_as_run(tuning: dict, summary: dict[str, Any]) -> dict[str, Any]:
    """The sampler as it really ran: TPE samples at random for its first ``startup_trials`` finished trials, so a
    study no longer than that was random search, whatever its name."""
    most = max((entry["trials"] for entry in summary.values()), default=0)
    startup = tuning["startup_trials"] if tuning["sampler"] == "tpe" else None
    if tuning["sampler"] == "random":
        described = "random search"
    elif most <= startup:
        described = f"random search (TPE's first {startup} trials are random, and no variant ran more)"
    else:
        described = f"TPE after {startup} random start-up trials"
    return {"name": tuning["sampler"], "startup_trials": startup, "described": described}


def tuned_suite(suite: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """The suite with each variant's best parameters in place of its search space."""
    tuned = copy.deepcopy(suite)
    # trained as long as it was tuned, unless the suite says otherwise
    tuned["trainer"].setdefault("max_epochs", summary["budget"]["epochs"])
    for index, variant in enumerate(tuned["variants"]):
        # the checkpoint the battery judges is chosen on the objective the trial values were (one definition)
        variant["objective"] = summary["variants"][variant["name"]]["objective"]
        best = summary["variants"][variant["name"]]["best_params"]
        if best is None:
            raise ConfigError(
                f"{variant['name']}: no trial of its study completed (all pruned or failed; see "
                "OUT/tuning/<variant>/trial*/); nothing to train"
            )
        tuned["variants"][index] = apply_params(variant, best, suite["data"])
        tuned["variants"][index].pop("search", None)
    return tuned


def spawn_workers(argv: list[str], slots: Slots) -> None:
    """``--parallel N`` on the CPU, or one worker per GPU slot: each a ``tune --tune-only`` process on the study."""
    processes = []
    for slot in range(len(slots.envs)):
        env = {**os.environ, **slots.env(slot, {}), "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "ae_lightning", "tune", *argv, "--tune-only", "--worker-index", str(slot)]
        processes.append(subprocess.Popen(command, env=env))
    failed = [code for code in (p.wait() for p in processes) if code]
    if failed:  # a worker killed by signal N returns -N: exit as a shell says it (128 + N), never 0
        raise SystemExit(failed[0] if failed[0] > 0 else 128 - failed[0])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = suite_parser("ae-lightning tune", __doc__.split("\n\n")[0])
    parser.add_argument("--tune-only", action="store_true", help="run trials and write tuning.json; no final runs")
    parser.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)  # set by spawn_workers
    return parse_suite_args(parser, argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own line per trial says what Optuna's would
    warnings.filterwarnings("ignore", category=UserWarning, module="(pytorch_lightning|lightning_fabric)")
    os.environ.setdefault("WANDB_SILENT", "true")  # a trial's W&B lines would drown its own; the sync hint is below
    suite = load_suite(args.suite, args)
    if suite.get("one_class"):  # which class would the trials' validation loss speak for?
        raise ConfigError(
            f"tune: suite {args.suite} runs the one-class protocol (one_class={suite['one_class']}); tune a suite "
            "without one_class on one normal class (data.normal_classes: [c]) and carry its values over"
        )
    tuning = load_tuning(suite, args.suite)
    out = args.out or Path("results") / suite["name"]
    gpus = visible_gpus(os.environ, torch.cuda.device_count())
    check_ddp(args, gpus)
    # the training files only: tuning never reads the test split (checked before the final runs, below)
    notes = [] if args.report_only or args.worker_index is not None else check_suite_data(suite, read_test=False)
    suite_id = establish_suite(out, suite)
    worker_index = args.worker_index if args.worker_index is not None else int(os.environ.get("SLURM_ARRAY_TASK_ID", 0))
    slots = Slots(gpus, False, args.parallel, args.runs_per_gpu, usable_cpus(os.environ))
    budget = f"{tuning['budget_epochs']} epochs per variant in trials of {tuning['epochs']}"
    print(
        f"tuning suite {suite['name']} ({suite_id}): {budget}, {tuning['objective']}; study in {out}/tuning", flush=True
    )
    for note in notes:
        print(f"note: {note}", flush=True)
    if args.report_only:  # no trials: summarise the study and write the report from finished runs
        pass
    elif args.worker_index is None and len(slots.envs) > 1:
        if budget_left(suite, tuning, out):
            spawn_workers(argv, slots)
        else:
            print("every study has used its budget: no new trial", flush=True)
    else:
        for variant in suite["variants"]:
            tune_variant(suite, suite_id, variant, tuning, out, worker_index)
    if args.tune_only:
        return 0
    wait_until_finished(suite, tuning, out)
    summary = summarise(suite, tuning, out)
    write_json_atomic(out / "tuning.json", summary)
    for name, entry in summary["variants"].items():
        if entry["trials"]:
            print(
                f"{name}: best {entry['objective']['metric']} {entry['best_value']} at {entry['best_params']} "
                f"({entry['trials']} trials, {entry['pruned']} pruned, {entry['failed']} failed, "
                f"{entry['epochs_trained']} epochs)",
                flush=True,
            )
    if suite["wandb"]["mode"] == "offline":
        print(f"W&B trial runs are offline; upload them with: wandb sync {out}/tuning/*/trial*/wandb/offline-run-*")
    final = tuned_suite(suite, summary)
    return run_suite(final, args, out, gpus, [] if args.report_only else check_suite_data(final))

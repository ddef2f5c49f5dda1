"""``ae-lightning tune``: equal budgets, the validation split only, a study that survives a kill and is shared by
processes, the tuned comparison, and one clear message for each bad input."""

from __future__ import annotations

import datetime
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from ae_lightning.errors import ConfigError
from ae_lightning.suite.compare import parse_args
from ae_lightning.suite.config import load_suite
from ae_lightning.suite.search import apply_params, load_tuning

from datasets import IDX_FILES, write_mnist_like
from test_cli import cli
from test_compare import suite_file
from wandb_records import read_run

LEARNING_RATE = {"kind": "float", "low": 3.0e-4, "high": 3.0e-3, "log": True}
CONTRACTIVE_WEIGHT = {"kind": "float", "low": 1.0e-5, "high": 1.0e-1, "log": True}


def tuning_suite(tmp_path: Path, data_root: Path, **tuning) -> Path:
    """test_compare's suite of generated MNIST, with two seeds and a tuning section; no max_epochs: the final runs
    train as long as the trials."""
    variants = [
        {"name": "AE", "model": "Autoencoder"},
        {
            "name": "CAE",
            "model": "ContractiveAutoencoder",
            "search": {"contractive_weight": CONTRACTIVE_WEIGHT},
            "objective": {"metric": "val/loss"},  # its own objective: reconstruction + λ‖J‖²
        },
    ]
    settings = {
        "budget_epochs": 6,
        "epochs": 2,
        "objective": {"metric": "val/mse", "direction": "minimize"},
        "search": {"learning_rate": LEARNING_RATE},
        **tuning,
    }
    return suite_file(
        tmp_path, data_root, variants, name="tiny-tune", trainer={"accelerator": "cpu"}, seeds=[0, 1], tuning=settings
    )


def read_val_curve(run_dir: Path, metric: str) -> list[float]:
    import csv

    with open(run_dir / "metrics.csv") as f:
        return [float(row[metric]) for row in csv.DictReader(f) if row.get(metric)]


def study_trials(out: Path, variant: str) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(out / "tuning" / "study.journal")))
    return optuna.load_study(study_name=variant, storage=storage).get_trials()


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """Tuned first with the test files replaced by bytes no reader can parse (so reading them would fail), then the
    full command with them back: the study is complete, so it goes on to the final runs without a new trial."""
    tmp_path = tmp_path_factory.mktemp("tune")
    data_root = tmp_path / "data"
    raw = data_root / "MNIST" / "raw"
    write_mnist_like(raw, n_train=1000)
    originals = {name: (raw / name).read_bytes() for name in IDX_FILES[False]}
    for name in IDX_FILES[False]:
        (raw / name).write_bytes(b"not an IDX file")
    suite = tuning_suite(tmp_path, data_root)
    out = tmp_path / "out"
    tune_only = cli("tune", str(suite), "--out", str(out), "--tune-only", cwd=tmp_path, timeout=600)
    for name, content in originals.items():
        (raw / name).write_bytes(content)
    trials_after_tuning = {v: [t.number for t in study_trials(out, v)] for v in ("AE", "CAE")}
    # two at a time: the final runs (the study is complete, so no worker process is started for trials)
    full = cli("tune", str(suite), "--out", str(out), "--parallel", "2", cwd=tmp_path, timeout=900)
    return out, tune_only, full, trials_after_tuning


def test_tuning_never_reads_the_test_split(tuned):
    out, tune_only, full, trials_after_tuning = tuned
    assert tune_only.returncode == 0, tune_only.stdout[-2000:] + tune_only.stderr[-2000:]
    for variant in ("AE", "CAE"):
        trials = study_trials(out, variant)
        assert [t.number for t in trials] == trials_after_tuning[variant]  # the re-run added no trial
        assert len(trials) == 3 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        assert 4 < sum(t.user_attrs["epochs_trained"] for t in trials) <= 6  # the budget: 6 epochs
    # … and started no --parallel worker to find that out (each would print its own "tuning suite" line)
    assert full.stdout.count("tuning suite ") == 1 and "no new trial" in full.stdout, full.stdout[-2000:]


def test_tuned_suite_trains_each_variant_at_its_best_and_reports(tuned):
    out, _, full, _ = tuned
    assert full.returncode == 0, full.stdout[-3000:] + full.stderr[-3000:]
    tuning = json.loads((out / "tuning.json").read_text())
    assert tuning["budget"] == {"budget_epochs": 6, "epochs": 2}
    assert tuning["sampler"] == {"name": "tpe", "startup_trials": 2, "described": "TPE after 2 random start-up trials"}
    assert tuning["variants"]["AE"]["objective"]["metric"] == "val/mse"
    assert tuning["variants"]["CAE"]["objective"]["metric"] == "val/loss"
    for variant, knobs in (("AE", {"learning_rate"}), ("CAE", {"learning_rate", "contractive_weight"})):
        entry = tuning["variants"][variant]
        assert entry["trials"] == 3 and entry["pruned"] + entry["failed"] <= 1
        assert 4 < entry["epochs_trained"] <= 6
        assert set(entry["best_params"]) == knobs
        assert LEARNING_RATE["low"] <= entry["best_params"]["learning_rate"] <= LEARNING_RATE["high"]
        complete = [t for t in study_trials(out, variant) if t.state == TrialState.COMPLETE]
        assert entry["best_value"] == min(t.value for t in complete)  # the best of what ran, on validation
        for trial in complete:  # a trial's value is its best epoch's: the checkpoint a final run keeps
            assert trial.value == min(trial.intermediate_values.values())
        # trials train with seeds of their own stream: none is a final seed, so no final run repeats a trial
        assert entry["trial_seeds"] == [t.user_attrs["seed"] for t in study_trials(out, variant)]
        assert len(set(entry["trial_seeds"])) == 3 and not set(entry["trial_seeds"]) & {0, 1}
        for seed in (0, 1):  # the final runs train the best configuration, as long as the trials did
            config = yaml.safe_load((out / "runs" / variant / f"seed{seed}" / "config.yaml").read_text())
            assert {k: config["model"]["init_args"][k] for k in knobs} == entry["best_params"]
            assert config["trainer"]["max_epochs"] == 2
            assert config["seed_everything"] not in entry["trial_seeds"]
            # the checkpoint the battery judges is chosen on the variant's objective
            assert config["checkpoint"]["monitor"] == entry["objective"]["metric"]
            final_curve = read_val_curve(out / "runs" / variant / f"seed{seed}", entry["objective"]["metric"])
            trial_curves = [list(t.intermediate_values.values()) for t in study_trials(out, variant)]
            assert final_curve not in trial_curves
    records = {(r["variant"], r["seed"]): r for r in json.loads((out / "summary.json").read_text())}
    assert all(r["status"] == "done" for r in records.values())
    aggregate = json.loads((out / "aggregate.json").read_text())
    assert aggregate["CAE"]["test/mse"]["n"] == 2 and aggregate["CAE"]["test/mse"]["ci_low"] is not None
    report = (out / "report.md").read_text()
    assert "## Tuning" in report and "the test split was not read" in report
    assert "| CAE | val/loss ↓ |" in report and "contractive_weight = " in report
    assert (out / "tuning_AE.png").is_file() and (out / "tuning_CAE.png").is_file()


def test_trials_are_wandb_runs_of_their_own_group(tuned):
    out, *_ = tuned
    suite_id = json.loads((out / "suite.json").read_text())["suite_id"]
    (run_dir,) = (out / "tuning" / "CAE" / "trial0" / "wandb").glob("offline-run-*")
    run = read_run(run_dir)
    assert run["run"]["job_type"] == "tune" and run["run"]["group"] == f"{suite_id}-tune"
    assert run["run"]["name"] == "CAE-trial0" and "contractive_weight" in run["config"]["params"]
    assert any("val/mse" in row for row in run["history"])
    (final,) = (out / "runs" / "CAE" / "seed0" / "wandb").glob("offline-run-*")
    assert read_run(final)["run"]["group"] == suite_id and read_run(final)["run"]["job_type"] == "train"


@pytest.mark.slow  # about a minute of trials; CI runs it
def test_a_killed_study_continues_and_two_processes_share_one(tmp_path):
    """Killed mid-trial, the study keeps its finished trials; re-run by two processes at once (--parallel 2), they
    finish it together: exactly the budget, the killed trial's parameters run again, both processes took trials."""
    data_root = tmp_path / "data"
    write_mnist_like(data_root / "MNIST" / "raw", n_train=2000)
    suite = tuning_suite(
        tmp_path, data_root, budget_epochs=36, epochs=3, sampler="random", search={"learning_rate": LEARNING_RATE}
    )  # enough trials left after the kill that the second process is up before the first has used them all
    out = tmp_path / "out"
    command = [sys.executable, "-m", "ae_lightning", "tune", str(suite), "--out", str(out), "--tune-only"]
    first = subprocess.Popen(command + ["--only", "AE"], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    lines = iter(first.stdout.readline, "")
    while not any(line.startswith("AE trial 1:") for line in lines):
        assert time.monotonic() < deadline and first.poll() is None
    # killed in trial 1's second epoch, however fast the machine (a fixed sleep once landed between two trials'
    # steps); the median pruner never stops the first two trials, so trial 1 is still running
    assert next(line for line in lines if line.startswith("epoch ")).startswith("epoch 1/3")
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = study_trials(out, "AE")
    finished = {t.number: t.value for t in before if t.state == TrialState.COMPLETE}
    (killed,) = [t for t in before if t.state == TrialState.RUNNING]
    again = cli("tune", str(suite), "--out", str(out), "--tune-only", "--only", "AE", "--parallel", "2", cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    after = study_trials(out, "AE")
    counted = [t for t in after if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    # the budget, though two processes asked for trials: 36 epochs, within one trial's 3 (pruned trials fund more)
    trials = [(t.number, t.state.name, t.user_attrs.get("epochs_trained"), t.user_attrs.get("failed_in_training"))
              for t in after]  # fmt: skip
    assert 33 < sum(t.user_attrs["epochs_trained"] for t in counted) <= 36, (trials, again.stdout[-3000:])
    assert {n: v for n, v in ((t.number, t.value) for t in after) if n in finished} == finished  # not re-run
    assert [t.params for t in counted if t.user_attrs.get("rerun_of") == killed.number] == [killed.params]  # again
    workers = {t.user_attrs["worker"] for t in counted if t.number > killed.number}
    assert len(workers) == 2, workers


def suite_error(tmp_path: Path, data_root: Path, key: str, value) -> str:
    """The ConfigError of the test suite with ``key`` (dotted, list indexes as numbers) set to ``value``."""
    path = tuning_suite(tmp_path, data_root)
    suite = yaml.safe_load(path.read_text())
    *parents, name = key.split(".")
    target = suite
    for parent in parents:
        target = target[int(parent)] if parent.isdigit() else target[parent]
    target[name] = value
    path.write_text(yaml.safe_dump(suite))
    with pytest.raises(ConfigError) as err:
        load_tuning(load_suite(path, parse_args([str(path)])), path)
    return str(err.value)


FLOAT = {"kind": "float"}
BAD_INPUT = [
    ("variants.1.search.contractive_wieght", CONTRACTIVE_WEIGHT, "'contractive_wieght' is not a knob of Contractive"),
    (
        "tuning.search.learning_rate",
        {**FLOAT, "low": 1e-2, "high": 1e-3},
        "low=0.01 .. high=0.001 is empty or inverted",
    ),
    ("tuning.search.learning_rate", {**FLOAT, "low": 1e-3, "high": 1e-3}, "is empty or inverted; give low < high"),
    ("tuning.search.learning_rate", {"kind": "loguniform"}, "kind='loguniform' does not exist; allowed: ['categ"),
    ("tuning.search.learning_rate", {**FLOAT, "low": 0.0, "high": 1e-2, "log": True}, "log=true needs low > 0"),
    ("tuning.trials", 3, "tuning.trials=3: the budget is now compute, tuning.budget_epochs (trials x epochs = 6)"),
    ("tuning.budget_epochs", 0, "tuning.budget_epochs=0: the budget must be an integer >= 1"),
    ("tuning.budget_epochs", 1, "tuning.budget_epochs=1 is less than one trial's epochs=2"),
    ("tuning.pruner_warmup_epochs", -1, "tuning.pruner_warmup_epochs=-1 must be an integer >= 0"),
    ("variants.0.trainer", {"max_epochs": 5}, "(AE).trainer.max_epochs=5: in a tuning suite every variant trains"),
    ("variants.0.data", {"batch_size": 10}, "(AE).data.batch_size=10: in a tuning suite it changes the compute"),
    ("tuning.epochs", -1, "tuning.epochs=-1: the budget must be an integer >= 1"),
    ("tuning.objective", {"metric": "test/mse"}, "metric='test/mse': tuning chooses on the validation split"),
    ("tuning.sampler", "grid", "tuning.sampler='grid'; allowed: ['random', 'tpe']"),
    ("variants.1.objective", {"metric": "val/loss", "direction": "up"}, "(CAE).objective.direction='up'; allowed"),
    ("variants.1.search.contractive_weight", {**FLOAT, "low": -1.0, "high": 1.0}, "= -1.0 (an end of its range) is"),
]


@pytest.mark.parametrize("key, value, message", BAD_INPUT)
def test_bad_tuning_input_gets_one_clear_message(tmp_path, key, value, message):
    data_root = tmp_path / "data"
    write_mnist_like(data_root / "MNIST" / "raw", n_train=200)
    assert message in suite_error(tmp_path, data_root, key, value)


def test_an_objective_the_runs_do_not_log_stops_tuning_with_the_logged_names(tmp_path):
    data_root = tmp_path / "data"
    write_mnist_like(data_root / "MNIST" / "raw", n_train=300)
    suite = tuning_suite(tmp_path, data_root, objective={"metric": "val/mse_typo"})
    result = cli("tune", str(suite), "--out", str(tmp_path / "out"), "--only", "AE", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "tuning.objective.metric='val/mse_typo' is not logged by Autoencoder; it logs: [" in result.stderr
    assert "'val/mse'" in result.stderr
    # nothing counted against the budget: a corrected objective starts the study from trial 0's slot
    assert not [t for t in study_trials(tmp_path / "out", "AE") if t.state != TrialState.FAIL]


def test_a_tuned_data_key_changes_only_that_key():
    variant = {"name": "DAE", "model": "DenoisingAutoencoder", "args": {"latent_dim": 8}}
    suite_data = {"name": "mnist", "noise": {"kind": "masking", "level": 0.5}}
    tuned = apply_params(variant, {"data.noise.level": 0.2, "learning_rate": 1e-3}, suite_data)
    assert tuned["data"] == {"noise": {"kind": "masking", "level": 0.2}}  # the suite's kind, the tuned level
    assert tuned["args"] == {"latent_dim": 8, "learning_rate": 1e-3} and variant["args"] == {"latent_dim": 8}


def test_a_trial_is_stale_when_its_process_is_gone_or_silent():
    import os
    import socket

    from ae_lightning.suite.tune import counts, is_stale

    def running(worker: str, heartbeat: float):
        return running_trial(0, worker=worker, heartbeat=heartbeat)

    here, now = socket.gethostname(), time.time()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert not is_stale(running(f"{here}:{os.getpid()}", now), 1800)  # alive here, beating
    assert is_stale(running(f"{here}:{int(dead.stdout)}", now), 1800)  # its process has exited: at once
    assert not is_stale(running("elsewhere:1", now - 600), 1800)  # another host: trusted while it beats
    assert is_stale(running("elsewhere:1", now - 3600), 1800)  # silent for an hour: reclaimed
    assert not counts(running("elsewhere:1", now - 3600), 1800) and counts(running("elsewhere:1", now), 1800)


def test_the_sampler_is_named_as_it_ran():
    from ae_lightning.suite.search import default_startup_trials
    from ae_lightning.suite.tune import sampler_as_run

    assert [default_startup_trials(n) for n in (3, 8, 30, 100)] == [2, 2, 10, 10]
    ran = {"AE": {"trials": 4}, "VAE": {"trials": 5}}
    assert sampler_as_run({"sampler": "tpe", "startup_trials": 10}, ran)["described"].startswith("random search")
    assert sampler_as_run({"sampler": "tpe", "startup_trials": 3}, ran)["described"] == (
        "TPE after 3 random start-up trials"
    )
    assert sampler_as_run({"sampler": "random", "startup_trials": 3}, ran)["described"] == "random search"


def test_trial_seeds_avoid_the_final_seeds():
    from ae_lightning.seeding import derive_seed
    from ae_lightning.suite.tune import trial_seed

    seeds = [trial_seed(0, number, [0, 1, 2]) for number in range(50)]
    assert len(set(seeds)) == 50 and not set(seeds) & {0, 1, 2} and all(0 <= s < 2**32 for s in seeds)
    clash = derive_seed(0, "trial", 4) % 2**32  # a final seed equal to a trial's: that trial takes another
    assert trial_seed(0, 4, [clash]) != clash


def test_tune_takes_a_reduced_budget_on_the_command_line_and_compare_does_not():
    from ae_lightning.errors import ConfigError
    from ae_lightning.suite.config import parse_dotted

    assert parse_dotted(["--tuning.budget_epochs", "12", "--tuning.epochs=2"], "tune") == {
        "tuning.budget_epochs": 12,
        "tuning.epochs": 2,
    }
    with pytest.raises(ConfigError, match="unrecognized argument '--tuning.epochs'; compare takes its own options"):
        parse_dotted(["--tuning.epochs", "2"], "compare")


def finished_trial(epochs_trained: int, state: TrialState = TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
    value = 0.5 if state == TrialState.COMPLETE else None
    return optuna.trial.create_trial(state=state, value=value, user_attrs={"epochs_trained": epochs_trained})


def running_trial(started_s_ago: float, **user_attrs) -> optuna.trial.FrozenTrial:
    trial = optuna.trial.create_trial(state=TrialState.RUNNING, user_attrs=user_attrs)
    trial.datetime_start = datetime.datetime.now() - datetime.timedelta(seconds=started_s_ago)
    return trial


def test_a_process_leaves_a_study_only_when_no_trial_fits_and_none_is_unclaimed():
    """Budget 36 in trials of 3. A running trial reserves its epochs; its process comes back when it ends, so the
    others may leave. One no process has named itself on is waited for (its process may have died right after asking
    for it, and would never come back), until it is a minute old: then it is stale and reserves nothing."""
    import os
    import socket

    from ae_lightning.suite.tune import UNCLAIMED_AFTER_S, is_stale, next_move

    live = {"worker": f"{socket.gethostname()}:{os.getpid()}", "heartbeat": time.time()}
    thirty_one = [finished_trial(3)] * 10 + [finished_trial(1, TrialState.PRUNED)]
    assert next_move(thirty_one, 3, 36, 1800) == "run"  # 31 + 3 ≤ 36
    assert next_move([*thirty_one, running_trial(5, **live)], 3, 36, 1800) == "done"  # 31 + 3 reserved + 3 > 36
    unclaimed = running_trial(5)
    assert not is_stale(unclaimed, 1800) and next_move([*thirty_one, unclaimed], 3, 36, 1800) == "wait"
    abandoned = running_trial(UNCLAIMED_AFTER_S + 5)
    assert is_stale(abandoned, 1800) and next_move([*thirty_one, abandoned], 3, 36, 1800) == "run"
    reclaimed = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"epochs_trained": 3})  # its process died
    assert next_move([*thirty_one, reclaimed], 3, 36, 1800) == "run"  # not counted: its parameters run again
    assert next_move([*thirty_one, finished_trial(3)], 3, 36, 1800) == "done"  # 34 + 3 > 36
    failed = {"epochs_trained": 3, "failed_in_training": "RuntimeError: out of memory"}
    failed_trial = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=failed)
    assert next_move([*thirty_one, failed_trial], 3, 36, 1800) == "done"  # failed while training: epochs spent


def stand_in_trials(monkeypatch, seed: int) -> None:
    """Trials that train 1 to 3 epochs in a few milliseconds (fewer than 3: pruned), in place of ``run_trial``."""
    import random

    from ae_lightning.suite import tune

    draws = random.Random(seed)

    def stand_in(trial, *args) -> float:
        epochs_trained = draws.choice([1, 2, 3, 3])
        time.sleep(draws.uniform(0, 0.03))
        trial.set_user_attr("epochs_trained", epochs_trained)
        if epochs_trained < 3:
            raise optuna.TrialPruned(f"epoch {epochs_trained}")
        return draws.random()

    monkeypatch.setattr(tune, "run_trial", stand_in)


def stand_in_study(tmp_path: Path, monkeypatch, seed: int, budget_epochs: int) -> tuple[dict, dict]:
    """The test suite and its tuning at ``budget_epochs`` in trials of 3, random search, trials stood in for."""
    path = tuning_suite(tmp_path, tmp_path / "data", budget_epochs=budget_epochs, epochs=3, sampler="random")
    suite = load_suite(path, parse_args([str(path)]))
    stand_in_trials(monkeypatch, seed)
    return suite, load_tuning(suite, path)


def test_processes_sharing_a_study_end_within_one_trial_of_the_budget(tmp_path, monkeypatch, capsys):
    """Two workers on one journal (threads), on 5 studies, in one of which a process was killed between asking for
    a trial and naming itself on it: every study ends with its epochs in (budget − one trial, budget], and such a
    trial runs again. (The unclaimed trial used to count as running elsewhere for half an hour, and the re-run left
    the study a trial short: issue 29's CI.)"""
    import threading

    from ae_lightning.suite import tune

    suite, tuning = stand_in_study(tmp_path, monkeypatch, seed=0, budget_epochs=36)
    monkeypatch.setattr(tune, "UNCLAIMED_AFTER_S", 3.0)  # a study's trials take ~0.2 s: they end well before it
    monkeypatch.setattr(tune, "WAIT_POLL_S", 0.05)
    totals = []
    for study in range(5):
        out = tmp_path / f"study{study}"
        abandoned = None
        if study == 2:  # asked for by a process that died at once: params drawn, no worker named
            abandoned = tune.open_study(out, "AE", tuning, 9).ask(tuning["spaces"]["AE"])
        workers = [
            threading.Thread(target=tune.tune_variant, args=(suite, "id", suite["variants"][0], tuning, out, index))
            for index in (0, 1)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        trials = study_trials(out, "AE")
        counted = [t for t in trials if tune.counts(t, 1800)]
        assert all(t.state != TrialState.RUNNING for t in trials)
        totals.append(sum(t.user_attrs["epochs_trained"] for t in counted))
        waited = "a trial no process has claimed; waiting" in capsys.readouterr().out
        if abandoned is not None:
            assert waited  # room ran out while it was young (a live worker's trial is unclaimed only for an instant)
            assert trials[abandoned.number].state == TrialState.FAIL and not tune.counts(trials[abandoned.number], 1800)
            assert [t.params for t in counted].count(abandoned.params) == 1
    assert all(33 < total <= 36 for total in totals), totals


def test_a_trial_reclaimed_by_two_processes_at_once_runs_once(tmp_path, monkeypatch):
    """Both queued the dead trial's parameters before one closed it: the first copy runs, the second is not counted."""
    from ae_lightning.suite import tune

    suite, tuning = stand_in_study(tmp_path, monkeypatch, seed=1, budget_epochs=9)
    study = tune.open_study(tmp_path / "out", "AE", tuning, 9)
    dead = study.ask(tuning["spaces"]["AE"])
    for _ in range(2):
        study.enqueue_trial(dead.params, user_attrs={"rerun_of": dead.number})
    study.tell(dead, state=TrialState.FAIL)
    tune.tune_variant(suite, "id", suite["variants"][0], tuning, tmp_path / "out", 0)
    trials = study_trials(tmp_path / "out", "AE")
    counted = [t for t in trials if tune.counts(t, 1800)]
    assert [t.params for t in counted].count(dead.params) == 1 and counted[0].params == dead.params
    assert trials[2].state == TrialState.FAIL and not tune.counts(trials[2], 1800)  # the second copy
    assert 6 < sum(t.user_attrs["epochs_trained"] for t in counted) <= 9


def test_a_reclaimed_trials_parameters_are_queued_before_it_is_closed(tmp_path, monkeypatch):
    """Another process asking in the instant between the two steps gets the dead trial's parameters, not new ones
    that would take the freed slot (closed first, the dead trial's parameters could be left queued past the budget)."""
    import socket

    from ae_lightning.suite import tune

    _, tuning = stand_in_study(tmp_path, monkeypatch, seed=4, budget_epochs=9)
    study = tune.open_study(tmp_path / "out", "AE", tuning, 0)
    other = tune.open_study(tmp_path / "out", "AE", tuning, 1)
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = study.ask(tuning["spaces"]["AE"])
    dead.set_user_attr("worker", f"{socket.gethostname()}:{int(dead_pid.stdout)}")
    asked_meanwhile = []
    tell = study.tell

    def tell_after_another_asks(*args, **kwargs):
        asked_meanwhile.append(other.ask(tuning["spaces"]["AE"]).params)
        return tell(*args, **kwargs)

    monkeypatch.setattr(study, "tell", tell_after_another_asks)
    tune.reclaim_stale(study, 1800)
    assert asked_meanwhile == [dead.params] and study_trials(tmp_path / "out", "AE")[0].state == TrialState.FAIL


def test_a_copy_of_a_trial_its_process_finished_after_all_does_not_run(tmp_path, monkeypatch):
    """Judged dead (say, no heartbeat from another host for half an hour), the trial was queued again, and then its
    process finished it: the copy would run the same parameters twice, beyond the budget."""
    from ae_lightning.suite import tune

    suite, tuning = stand_in_study(tmp_path, monkeypatch, seed=3, budget_epochs=9)
    study = tune.open_study(tmp_path / "out", "AE", tuning, 9)
    slow = study.ask(tuning["spaces"]["AE"])
    study.enqueue_trial(slow.params, user_attrs={"rerun_of": slow.number})
    slow.set_user_attr("epochs_trained", 3)
    study.tell(slow, 0.5)
    tune.tune_variant(suite, "id", suite["variants"][0], tuning, tmp_path / "out", 0)
    trials = study_trials(tmp_path / "out", "AE")
    assert trials[1].state == TrialState.FAIL and not tune.counts(trials[1], 1800)  # the copy
    counted = [t for t in trials if tune.counts(t, 1800)]
    assert [t.params for t in counted].count(slow.params) == 1
    assert 6 < sum(t.user_attrs["epochs_trained"] for t in counted) <= 9


def test_a_process_whose_new_trial_was_closed_before_it_named_itself_goes_on(tmp_path, monkeypatch):
    """Another process judged the trial unclaimed (a stall of over a minute) and closed it: this one does not crash
    on naming itself; it asks again, and the study still ends within one trial of its budget."""
    from ae_lightning.suite import tune

    suite, tuning = stand_in_study(tmp_path, monkeypatch, seed=2, budget_epochs=9)
    other = tune.open_study(tmp_path / "out", "AE", tuning, 9)
    names = iter([None, "closed"])

    def name_after_a_stall() -> str:
        if next(names, None) == "closed":  # the second trial: closed by the other process before it is named
            (asked,) = other.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            other.tell(asked.number, state=TrialState.FAIL)
        return "here:1"

    monkeypatch.setattr(tune, "worker_name", name_after_a_stall)
    tune.tune_variant(suite, "id", suite["variants"][0], tuning, tmp_path / "out", 0)
    trials = study_trials(tmp_path / "out", "AE")
    assert trials[1].state == TrialState.FAIL and "worker" not in trials[1].user_attrs
    counted = [t for t in trials if tune.counts(t, 1800)]
    assert 6 < sum(t.user_attrs["epochs_trained"] for t in counted) <= 9


def test_a_trial_closed_by_another_process_while_it_ran_is_no_crash(tmp_path, monkeypatch, capsys):
    """Judged abandoned by another process (silent too long), closed mid-training — the next write raises — or after
    its last write, when the tell does: this process says so and goes on, and the study still uses its budget."""
    from ae_lightning.suite import tune

    suite, tuning = stand_in_study(tmp_path, monkeypatch, seed=5, budget_epochs=9)
    other = tune.open_study(tmp_path / "out", "AE", tuning, 9)
    closes = iter(["mid-training", "before the tell"])

    def stand_in(trial, *args) -> float:
        how = next(closes, None)
        if how is not None:
            other.tell(trial.number, state=TrialState.FAIL)
        if how != "before the tell":
            trial.set_user_attr("epochs_trained", 3)
        return 0.5

    monkeypatch.setattr(tune, "run_trial", stand_in)
    tune.tune_variant(suite, "id", suite["variants"][0], tuning, tmp_path / "out", 0)
    trials = study_trials(tmp_path / "out", "AE")
    assert [t.state for t in trials] == [TrialState.FAIL] * 2 + [TrialState.COMPLETE] * 3
    assert capsys.readouterr().out.count("was closed by another process that judged it abandoned") == 2


def test_a_trial_asked_for_when_the_trials_before_it_took_the_budget_does_not_run(tmp_path, monkeypatch):
    """Two processes asking at once both saw room for one trial: the later-numbered one is turned away unrun."""
    import os
    import socket

    from ae_lightning.suite import tune

    suite, tuning = stand_in_study(tmp_path, monkeypatch, seed=6, budget_epochs=9)
    study = tune.open_study(tmp_path / "out", "AE", tuning, 9)
    for _ in range(2):
        done = study.ask(tuning["spaces"]["AE"])
        done.set_user_attr("epochs_trained", 3)
        study.tell(done, 0.5)
    first = study.ask(tuning["spaces"]["AE"])  # the other process's: 6 + 3 = 9, the last room
    first.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    second = study.ask(tuning["spaces"]["AE"])
    ran = []
    monkeypatch.setattr(tune, "run_trial", lambda trial, *args: ran.append(trial.number) or 0.5)
    tune.run_asked_trial(study, second, suite, "id", suite["variants"][0], tuning, tmp_path / "out")
    assert ran == [] and study_trials(tmp_path / "out", "AE")[second.number].state == TrialState.FAIL


def test_a_worker_killed_by_a_signal_fails_the_command(monkeypatch):
    """--parallel N: a worker that died by a signal (exit -9) made the command exit max(0, -9) = 0."""
    from ae_lightning.suite import tune
    from ae_lightning.suite.launch import Slots

    codes = iter([0, -9])

    class Worker:
        def __init__(self, command, env):
            self.code = next(codes)

        def wait(self) -> int:
            return self.code

    monkeypatch.setattr(tune.subprocess, "Popen", Worker)
    with pytest.raises(SystemExit) as stop:
        tune.spawn_workers(["suite.yaml"], Slots([], False, 2, 1, 2))
    assert stop.value.code == 128 + 9

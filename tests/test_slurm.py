"""Slow: the project's sbatch files on a real single-node SLURM cluster started here (scripts/slurm/local_cluster.sh):
a 2-task DDP job, a suite as an array job plus its report, and a preemption (SIGUSR1) after which the job requeues,
resumes from its checkpoint and ends with the step count of an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, has_row, write_small_suite

SLURM = REPO / "scripts" / "slurm"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("slurmctld") is None or os.geteuid() != 0,
        reason="needs root and Debian's slurm-wlm + munge (CI installs them)",
    ),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    directory = tmp_path_factory.mktemp("slurm")
    started = subprocess.run(
        ["bash", str(SLURM / "local_cluster.sh"), "start", str(directory)], capture_output=True, text=True, timeout=120
    )
    assert started.returncode == 0, started.stdout + started.stderr
    env = {
        **os.environ,
        "SLURM_CONF": str(directory / "slurm.conf"),
        "PYTHONWARNINGS": "ignore",
        "AE_LIGHTNING": str(Path(sys.executable).parent / "ae-lightning"),
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "disabled",
    }
    yield env
    subprocess.run(["bash", str(SLURM / "local_cluster.sh"), "stop", str(directory)], timeout=120)


def submit(env: dict, cwd: Path, *args: str) -> str:
    result = subprocess.run(["sbatch", "--parsable", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(";")[0]


def in_queue(env: dict, job: str) -> bool:
    result = subprocess.run(["squeue", "-h", "-j", job], env=env, capture_output=True, text=True)
    return bool(result.stdout.strip())


def wait_gone(env: dict, job: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while in_queue(env, job):
        assert time.monotonic() < deadline, f"job {job} still queued or running"
        time.sleep(1)


def submit_script(env: dict, cwd: Path, script: str, *args: str) -> str:
    """Run one of scripts/slurm/submit_*.sh; its output line (job ids, where the results go)."""
    result = subprocess.run(
        ["bash", str(SLURM / script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def fit_args(data_root: Path, *extra: str) -> list[str]:
    return [
        "fit",
        "--data.name",
        "mnist",
        "--data.root",
        str(data_root),
        "--data.val_size",
        "100",
        "--data.download",
        "false",
        "--trainer.accelerator",
        "cpu",
        "--trainer.enable_progress_bar",
        "false",
        *extra,
    ]


def newest_last_checkpoint(run_dir: Path) -> dict:
    path = max(run_dir.glob("lightning_logs/version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    return torch.load(path, weights_only=True)


def test_two_task_ddp_job(cluster, data_root, tmp_path):
    env = {**cluster, "RUN_DIR": str(tmp_path / "run")}
    job = submit(
        env,
        tmp_path,
        "--ntasks-per-node",
        "2",
        "--cpus-per-task",
        "1",
        str(SLURM / "run.sbatch"),
        *fit_args(
            data_root,
            "--model",
            "Autoencoder",
            "--data.batch_size",
            "25",
            "--trainer.max_epochs",
            "2",
            "--trainer.strategy",
            "ddp",
        ),
    )
    wait_gone(env, job)
    output = (tmp_path / f"slurm-ae-lightning-{job}.out").read_text()
    assert "1 node(s) x 2 task(s)" in output and "GLOBAL_RANK: 1, MEMBER: 2/2" in output, output[-3000:]
    # 500 images, 2 ranks x 25 = 50 a step: 10 steps an epoch
    assert newest_last_checkpoint(tmp_path / "run")["global_step"] == 20
    assert len(list((tmp_path / "run").rglob("last.ckpt"))) == 1


def test_suite_as_an_array_job_fills_the_results(cluster, data_root, tmp_path):
    variants = [{"name": "AE", "model": "Autoencoder"}, {"name": "VAE", "model": "VariationalAutoencoder"}]
    write_small_suite(tmp_path / "suite.yaml", data_root, "array", variants, epochs=2, wandb_mode="offline")
    env = {**cluster, "SBATCH_ARGS": "--cpus-per-task=1"}
    submitted = submit_script(env, tmp_path, "submit_suite.sh", "suite.yaml", "out")
    assert "(2 runs)" in submitted
    wait_gone(env, submitted.split("report job ")[1].split(";")[0])
    out = tmp_path / "out"
    records = json.loads((out / "summary.json").read_text())
    assert [(r["variant"], r["status"]) for r in records] == [("AE", "done"), ("VAE", "done")]
    suite_id = json.loads((out / "suite.json").read_text())["suite_id"]
    assert suite_id.startswith("array-slurm")  # every array task agreed on one W&B group
    for record in records:
        info = json.loads((tmp_path / record["run_dir"] / "run.json").read_text())
        assert info["suite_id"] == suite_id
    assert has_row((out / "report.md").read_text(), "AE") and (out / "metrics.png").is_file()


def test_tuning_as_an_array_job_shares_one_study(cluster, data_root, tmp_path):
    """Two array tasks work on one study (exactly the budget between them), then the final job trains the best."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    variants = [{"name": "AE", "model": "Autoencoder"}]
    search = {"learning_rate": {"kind": "float", "low": 3.0e-4, "high": 3.0e-3, "log": True}}
    tuning = {"budget_epochs": 4, "epochs": 1, "objective": "val/mse", "sampler": "random", "search": search}
    write_small_suite(
        tmp_path / "suite.yaml", data_root, "tune", variants, epochs=1, wandb_mode="disabled", tuning=tuning
    )
    env = {**cluster, "SBATCH_ARGS": "--cpus-per-task=1"}
    submitted = submit_script(env, tmp_path, "submit_tune.sh", "suite.yaml", "out", "2")
    wait_gone(env, submitted.split("report job ")[1].split(";")[0])
    out = tmp_path / "out"
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(out / "tuning" / "study.journal")))
    trials = optuna.load_study(study_name="AE", storage=storage).get_trials()
    counted = [t for t in trials if t.state.is_finished() and t.state.name != "FAIL"]
    assert len(counted) == 4, [(t.number, t.state) for t in trials]
    assert len({t.user_attrs["worker"] for t in counted}) == 2  # both array tasks took trials
    tuning_json = json.loads((out / "tuning.json").read_text())
    assert tuning_json["variants"]["AE"]["trials"] == 4 and tuning_json["variants"]["AE"]["epochs_trained"] == 4
    records = json.loads((out / "summary.json").read_text())
    assert [(r["variant"], r["status"]) for r in records] == [("AE", "done")]
    bad = subprocess.run(
        ["bash", str(SLURM / "submit_tune.sh"), "suite.yaml", "out", "0"], cwd=tmp_path, env=env, capture_output=True
    )
    assert bad.returncode == 2 and b"workers=0 must be a positive integer" in bad.stderr


def submit_once_checkpointed(env: dict, tmp_path: Path, sbatch: list[str], args: list[str]) -> str:
    """Submit run.sbatch and return its job id once the run has written a checkpoint (so there is a step to lose)."""
    job = submit(env, tmp_path, *sbatch, str(SLURM / "run.sbatch"), *args)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "run").glob("lightning_logs/version_*/checkpoints/last.ckpt")):
        assert time.monotonic() < deadline and in_queue(env, job), "no checkpoint before the job ended"
        time.sleep(0.2)
    return job


def start_when_requeued(env: dict, job: str, timeout: float = 300) -> None:
    """SLURM holds a requeued job for about two minutes (its BeginTime; 170 s measured here) before it may start
    again — the cluster's policy, not what these tests check: once it is pending again, let it start now."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=env, capture_output=True, text=True)
        if state.stdout.strip() == "PENDING":
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env, capture_output=True)
            return
        if not state.stdout.strip():  # gone: nothing to hold
            return
        time.sleep(0.2)


def requeued_and_finished(env: dict, tmp_path: Path, job: str, final_step: int) -> int:
    """After SIGUSR1: the job was requeued once by Lightning, resumed from its hpc checkpoint and ended at the final
    step of an uninterrupted run. Returns the step the hpc checkpoint was taken at."""
    start_when_requeued(env, job)
    wait_gone(env, job, timeout=900)
    output = (tmp_path / f"slurm-ae-lightning-{job}.out").read_text()
    assert "(restart 1)" in output, output[-4000:]  # requeued once by Lightning on SIGUSR1
    hpc = list((tmp_path / "run").glob("hpc_ckpt_*.ckpt"))
    assert len(hpc) == 1, f"Lightning saved {len(hpc)} checkpoints on SIGUSR1"
    assert "Restored all states from the checkpoint" in output
    assert newest_last_checkpoint(tmp_path / "run")["global_step"] == final_step  # as an uninterrupted run
    return torch.load(hpc[0], weights_only=True)["global_step"]


def test_preemption_requeues_and_resumes_to_the_same_final_step(cluster, data_root, tmp_path):
    env = {**cluster, "RUN_DIR": str(tmp_path / "run")}
    epochs = 60
    args = fit_args(
        data_root,
        "--model",
        "VariationalAutoencoder",
        "--data.batch_size",
        "50",
        "--trainer.max_epochs",
        str(epochs),
        "--resume_checkpoint.every_n_train_steps",
        "20",
    )
    job = submit_once_checkpointed(env, tmp_path, ["--cpus-per-task", "2"], args)
    time.sleep(1.0)
    signalled = subprocess.run(["scancel", "--signal=USR1", job], env=env, capture_output=True, text=True)
    assert signalled.returncode == 0, signalled.stderr
    interrupted_at = requeued_and_finished(env, tmp_path, job, final_step=epochs * 10)
    assert 0 < interrupted_at < epochs * 10


def task_pids(env: dict, job: str) -> dict[int, int]:
    """{global rank: pid} of the job's srun tasks (scontrol listpids: PID JOBID STEPID LOCALID GLOBALID)."""
    listed = subprocess.run(["scontrol", "listpids", job], env=env, capture_output=True, text=True)
    pids = {}
    for line in listed.stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) == 5 and fields[4].isdigit() and fields[2] != "batch":
            pids[int(fields[4])] = int(fields[0])
    return pids


def test_preemption_signal_to_one_ddp_rank_checkpoints_every_rank_at_one_step(cluster, data_root, tmp_path):
    # SIGUSR1 reaches rank 1 only. Lightning's handler saves the hpc checkpoint, a collective: both ranks must run
    # it at the same step or the job hangs. Then the job requeues and both ranks resume to the uninterrupted end.
    env = {**cluster, "RUN_DIR": str(tmp_path / "run")}
    epochs = 60
    args = fit_args(
        data_root,
        "--model",
        "Autoencoder",
        "--data.batch_size",
        "25",
        "--trainer.max_epochs",
        str(epochs),
        "--trainer.strategy",
        "ddp",
        "--resume_checkpoint.every_n_train_steps",
        "20",
        "--resume_checkpoint.signal_sync_every_n_steps",
        "5",
    )
    job = submit_once_checkpointed(env, tmp_path, ["--ntasks-per-node", "2", "--cpus-per-task", "1"], args)
    pids = task_pids(env, job)
    assert set(pids) == {0, 1}, pids
    os.kill(pids[1], signal.SIGUSR1)  # rank 1 alone
    interrupted_at = requeued_and_finished(env, tmp_path, job, final_step=epochs * 10)
    assert 0 < interrupted_at < epochs * 10 and interrupted_at % 5 == 0  # at an agreed step

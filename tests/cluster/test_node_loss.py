"""A sweep that survives losing a node, and its driver being stopped.

A real two-node cluster on this machine (tests/ray_nodes.py): a head (the job's driver, Tune) and
a second node with the custom resource `victim`, the only place where the sweep's trials
(`resources.custom_resources: {victim: 1}`) can run. The smoke sweep, 2 trials x 10 epochs, is
submitted with `ray job submit`; then:

1. while trial 1 runs, the second node's raylet is SIGKILLed (its `ray start --block` then kills
   the rest of the node: the node is gone). The GCS marks it dead after its health checks fail
   (shortened here: RAY_health_check_period_ms=1000, 5 failures); Tune sees the trial's actor
   die and retries it (resources.max_failures 1) from its last checkpoint. The retry needs a
   `victim` node: the test starts the node again, as an administrator (or the autoscaler)
   would bring the machine back. It could not run elsewhere: only that node has the resource.
2. while trial 2 runs, the driver job is stopped with `ray job stop` (RAY_JOB_STOP_SIGNAL=SIGINT
   in the job's env: Tune saves its state) and `mfclr sweep ... --resume`, submitted again,
   completes it.

Then results.json and the Optuna journal hold each trial exactly once, finished; each trial is
one W&B run whose steps go on, after the failure or the stop, from where it left off.
Ray's own promise, which this keeps: a report in flight when a worker dies may be lost (the
retry then trains that epoch again, and W&B does not log its step twice).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
import optuna  # noqa: E402
from ray_nodes import (  # noqa: E402
    free_ports,
    ray_cli,
    ray_env,
    short_tmp,
    start_node,
    stop_node,
    stop_procs,
    sweep_entrypoint,
    tree,
)
from wandb_files import inspect_run, offline_runs, settled_steps  # noqa: E402

pytestmark = pytest.mark.ray
# Trials long enough to be caught mid-run: 10 epochs of 10 steps (~0.5 s each here; at 3 epochs
# of 2 steps a trial ended before the node could be killed, and Tune registers results in bursts).
EPOCHS = 10


@dataclass
class Cluster:
    """A head and a `victim` node; `lose_victim` / `restart_victim` take it away and back."""

    address: str  # the jobs API
    gcs: int
    env: dict[str, str]
    logs: Path
    nodes: dict[str, subprocess.Popen] = field(default_factory=dict)  # `ray start --block`
    folders: list[str] = field(default_factory=list)

    def start_victim(self) -> None:
        folder = short_tmp("mfclr-ray-")  # a fresh temp dir: the lost node's sockets linger
        self.folders.append(folder)
        n = len(self.folders)
        self.nodes["victim"] = start_node(
            [f"--address=127.0.0.1:{self.gcs}", "--num-cpus=1", '--resources={"victim": 1}',
             f"--dashboard-agent-listen-port={free_ports(1)[0]}", f"--temp-dir={folder}"],
            self.logs / f"victim-{n}.log", self.env,
        )  # fmt: skip

    def lose_victim(self) -> None:
        """SIGKILL the victim node's raylet; stop what of the node outlives it, by pid."""
        node = self.nodes["victim"]
        procs = tree(node.pid)
        (raylet,) = [p for p in procs if p.name() == "raylet"]
        os.kill(raylet.pid, signal.SIGKILL)
        node.wait(timeout=60)  # `ray start --block` kills the node's other processes, exits 1
        stop_procs(procs)  # its workers (the trial) and their children, if any linger


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    gcs, dash, client, agent = free_ports(4)
    head_dir = short_tmp("mfclr-ray-")
    token = Path(head_dir) / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    # A dead raylet fails every health check at once: 5 checks 1 s apart (not 3 s) mark its
    # node dead in ~5 s. The timeout of one check stays Ray's (10 s): a busy raylet is alive.
    env = ray_env(RAY_AUTH_TOKEN_PATH=str(token), RAY_health_check_period_ms="1000",
                  RAY_health_check_failure_threshold="5")  # fmt: skip
    c = Cluster(f"http://127.0.0.1:{dash}", gcs, env, tmp_path, folders=[head_dir])
    try:
        c.nodes["head"] = start_node(
            ["--head", f"--port={gcs}", "--num-cpus=1", "--include-dashboard=true",
             f"--dashboard-port={dash}", f"--ray-client-server-port={client}",
             f"--dashboard-agent-listen-port={agent}", f"--temp-dir={head_dir}"],
            tmp_path / "head.log", env,
        )  # fmt: skip
        c.start_victim()
        yield c
    finally:
        for proc in reversed(list(c.nodes.values())):
            stop_node(proc)
        for folder in c.folders:
            shutil.rmtree(folder, ignore_errors=True)


def _job(c: Cluster, *args: str, timeout: float = 120) -> str:
    done = ray_cli("job", *args, env=c.env, timeout=timeout)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout + done.stderr


def _state(c: Cluster, *args: str) -> list[dict]:
    """A `ray list ...` state query's JSON rows."""
    done = ray_cli(*args, f"--address={c.address}", env=c.env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return json.loads(done.stdout[done.stdout.index("[") :])


def _submit(c: Cluster, job: str, entry: list[str], *, wait: bool) -> str:
    # RAY_JOB_STOP_SIGNAL=SIGINT: `ray job stop` lets Tune save its state (docs/cluster.md).
    env_vars = {"WANDB_MODE": "offline", "RAY_JOB_STOP_SIGNAL": "SIGINT",
                "RAY_JOB_STOP_WAIT_TIME_S": "60"}  # fmt: skip
    return _job(c, "submit", f"--address={c.address}", f"--submission-id={job}",
                *([] if wait else ["--no-wait"]), "--working-dir", ".", "--runtime-env-json",
                json.dumps({"env_vars": env_vars}), "--", *entry, timeout=900)  # fmt: skip


def _epochs(results: Path) -> list[int]:
    """The epochs of the results Tune has recorded in a trial's result.json (in order)."""
    lines = results.read_text().splitlines() if results.is_file() else []
    return [json.loads(line)["epochs_done"] for line in lines if line.endswith("}")]


def _wait_for_epoch(c: Cluster, trial_dir: Path, epoch: int, job: str) -> None:
    """Until Tune has registered the trial's report (and checkpoint) of `epoch`: its driver
    writes the trial's result.json as it processes each result."""
    results, end = trial_dir / "result.json", time.monotonic() + 600
    while epoch not in _epochs(results):
        if time.monotonic() > end:
            logs = ray_cli("job", "logs", f"--address={c.address}", job, env=c.env)
            pytest.fail(f"no epoch {epoch} in {results} within 600 s: {logs.stdout[-3000:]}")
        time.sleep(0.1)


def _check_once(sweep: Path, trial_names: list[str]) -> dict:
    """results.json and the Optuna journal: every trial exactly once, finished."""
    results = json.loads((sweep / "results.json").read_text())
    rows = results["best"]["audio"]["trials"]
    assert sorted(r["trial"] for r in rows) == trial_names  # once each
    assert all(r["epochs_done"] == EPOCHS and r["error"] is None for r in rows), rows
    study = optuna.load_study(
        study_name="smoke-audio",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(sweep / "study-audio.log"))
        ),
    )
    assert sorted(t.user_attrs["trial"] for t in study.trials) == trial_names
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert sorted(t.intermediate_values) == list(range(1, EPOCHS + 1))
    return results


def _check_one_run(sweep: Path, name: str, resumed_from: int) -> None:
    """The trial's W&B run: one id over both starts, its steps strictly increasing to the last
    epoch, the second start's going on after the checkpoint it resumed from.

    A trial runs at most one report ahead of what Tune registered, and logs an epoch to W&B
    before reporting it: the first start may have logged epoch `resumed_from + 1`, which the
    retry trains again but does not log twice (tracking/runs.py's steps file). That row may
    also be lost, in flight when Ray killed the process and its W&B service (Ray's own caveat
    for reports): then the run skips that one step."""
    run_id = f"smoke-{name}"
    steps = settled_steps(sweep, run_id, list(range(1, EPOCHS + 1)))  # one id, or it fails
    assert steps == sorted(set(steps)) and steps[-1] == EPOCHS, steps
    own = re.compile(rf"-{re.escape(run_id)}(-\d+)?$")
    starts = [inspect_run(p) for p in offline_runs(sweep) if own.search(p.name)]
    starts = [[int(h["_step"]) for h in r["history"] if "epoch" in h] for r in starts]
    first, *_, last = [s for s in starts if s]
    assert len(starts) >= 2 and resumed_from < last[0] <= resumed_from + 2, starts
    assert first[0] == 1 and last == list(range(last[0], EPOCHS + 1)), starts


def test_a_sweep_survives_a_lost_node_and_a_stopped_driver(
    cluster: Cluster, tmp_path: Path
) -> None:
    out = tmp_path / "out"  # one machine: a shared filesystem for both nodes
    overrides = ["formats=[audio]", "budget.trials=2", f"budget.epochs={EPOCHS}",
                 f"budget.grace_period={EPOCHS}", "train.max_steps_per_epoch=10",
                 "train.batch_size=8", "data.probe.embedded.clips_per_class=30",
                 "probe.heads=[linear]",
                 "search.space.probe_head.choices=[linear]", "probe.random_init_control=false",
                 "probe.mfcc_baseline=false", f"data.cache_dir={tmp_path / 'cache'}",
                 "resources.custom_resources={victim: 1}"]  # fmt: skip
    entry = sweep_entrypoint(out, overrides)
    trials = out / "smoke" / "tune" / "audio"
    first = f"mfclr-loss-{os.getpid()}"
    _submit(cluster, first, entry, wait=False)

    # 1. The node under trial 1 is lost after its first checkpoint; Tune retries the trial.
    _wait_for_epoch(cluster, trials / "audio_001", 1, first)
    cluster.lose_victim()
    cluster.start_victim()
    # 2. Trial 2 has a checkpoint: stop the driver; --resume finishes the sweep.
    _wait_for_epoch(cluster, trials / "audio_002", 1, first)
    _job(cluster, "stop", f"--address={cluster.address}", first, timeout=180)
    status = _job(cluster, "status", f"--address={cluster.address}", first)
    assert f"job '{first}' was stopped" in status.lower(), status
    logs = _job(cluster, "logs", f"--address={cluster.address}", first)
    assert "1 of 2 trials finished" in logs and "--resume" in logs, logs[-3000:]
    _submit(cluster, f"{first}-resume", [*entry, "--resume"], wait=True)

    _check_once(out / "smoke", ["audio_001", "audio_002"])
    # Trial 1 failed once (the lost node) and resumed from a checkpoint; trial 2 was stopped
    # and resumed from one. Their last reports say from which epoch.
    for name in ("audio_001", "audio_002"):
        last = json.loads((trials / name / "result.json").read_text().splitlines()[-1])
        assert last["epochs_done"] == EPOCHS and last["resumed_from_epoch"] >= 1, last
        _check_one_run(out / "smoke", name, last["resumed_from_epoch"])
    assert (trials / "audio_001" / "error.txt").is_file()  # Tune recorded the trial's failure
    # The GCS saw the node die: one dead node, the first `victim` node; its successor is alive.
    nodes = _state(cluster, "list", "nodes", "--detail", "--format=json")
    states = sorted(n["state"] for n in nodes if "victim" in n["resources_total"])
    assert states == ["ALIVE", "DEAD"], nodes

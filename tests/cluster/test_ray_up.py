"""`ray up` for real: the shipped cluster-onprem.yaml (Ray's local node provider), with this
machine as its head, run by the cluster launcher over SSH; the smoke sweep submitted with
`ray job submit` through `ray dashboard`'s tunnel with token auth; its results, best encoder and
Optuna journal checked; `ray down`.

The head's account is a throw-away user with its own HOME, Ray temp dir and ports, reached
through an sshd of the test's own on 127.0.0.1 (tests/onprem.py says why). The launcher runs
the shipped file with its placeholders filled in (`onprem.launcher_config`): the same file
mounts (the repository, the token), start commands (token auth, dashboard on 127.0.0.1, a head
that takes work) and teardown. Only the install step is replaced by a check, since the head
reuses this project's environment. Every process the test starts is stopped by its id; the
user's own are all the test's.

Needs root, openssh-server, openssh-client and rsync (skipped otherwise, naming them; .ci/run
installs them). `make cluster-check` runs this test alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray")
import onprem  # noqa: E402
import optuna  # noqa: E402
from ray_nodes import (  # noqa: E402
    RAY,
    ROOT,
    free_ports,
    psutil,
    ray_cli,
    short_tmp,
    stop_node,
    stop_procs,
)

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.ray,
    pytest.mark.skipif(onprem.missing() is not None, reason=str(onprem.missing())),
]
ONPREM = ROOT / "cluster-onprem.yaml"


@dataclass(frozen=True)
class Launch:
    config: Path  # the cluster file `ray up` runs
    env: dict[str, str]  # the submitting machine's environment (its own HOME: the token)
    user: onprem.User
    dashboard: int  # the head's dashboard port (on its 127.0.0.1)
    log: Path  # what the launcher printed


def _submitter_env(scratch: Path) -> dict[str, str]:
    """The submitting machine: its own HOME (where `ray get-auth-token` keeps the token), the
    launcher's cluster state in the test's folder instead of /tmp/ray."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")}  # fmt: skip
    (scratch / "submitter").mkdir()
    return env | {"HOME": str(scratch / "submitter"), "RAY_TMPDIR": str(scratch),
                  "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip


@pytest.fixture
def launch() -> Iterator[Launch]:
    scratch = Path(short_tmp("mfu-"))
    scratch.chmod(0o755)  # the head's account lives below it
    env, path, user, sshd = _submitter_env(scratch), scratch / "cluster.yaml", None, None
    try:
        user = onprem.create_user(scratch)
        onprem.prepare_head_account(scratch, user)
        sshd = onprem.start_sshd(scratch, user, free_ports(1)[0])
        ports = free_ports(len(onprem.PORT_FLAGS))
        cfg = onprem.launcher_config(yaml.safe_load(ONPREM.read_text()), user, sshd, ports)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        yield Launch(path, env, user, ports[-1], scratch / "launcher.log")
    finally:
        if user is not None:
            if onprem.named(onprem.processes_of(user), "raylet"):  # the test failed before
                ray_cli("down", "-y", str(path), env=env, timeout=300)
            stop_procs(onprem.processes_of(user))  # the test's user: all its processes are ours
        if sshd is not None:
            stop_node(sshd.proc)  # the listener and its per-connection processes
        if user is not None:
            onprem.delete_user(user)
            onprem.drop_control_dir(onprem.cluster_name(user))
        shutil.rmtree(scratch, ignore_errors=True)


def _launcher(launch: Launch, *args: str, timeout: float = 900) -> str:
    """Run `ray <args> <cluster file>`; its output, appended to the launcher log."""
    done = ray_cli(*args, str(launch.config), env=launch.env, timeout=timeout)
    with open(launch.log, "a") as fh:
        fh.write(f"$ ray {' '.join(args)}\n{done.stdout}{done.stderr}\n")
    assert done.returncode == 0, f"ray {args[0]} failed: {(done.stdout + done.stderr)[-3000:]}"
    return done.stdout + done.stderr


def _tunnel(launch: Launch) -> tuple[subprocess.Popen, str]:
    """`ray dashboard`: the head's loopback dashboard port forwarded over SSH to a local one."""
    local = free_ports(1)[0]
    proc = subprocess.Popen(
        [RAY, "dashboard", str(launch.config), "--port", str(local),
         "--remote-port", str(launch.dashboard)],
        env=launch.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    address = f"http://127.0.0.1:{local}"
    end = time.monotonic() + 60
    while ray_cli("job", "list", f"--address={address}", env=launch.env).returncode != 0:
        assert proc.poll() is None, "ray dashboard exited"
        assert time.monotonic() < end, "the dashboard tunnel did not answer within 60 s"
        time.sleep(1)
    return proc, address


def _check_head(launch: Launch, token: str) -> None:
    """The head as the file promises: the token arrived as a 0600 file, Ray runs as the
    file's user, and the dashboard (jobs API) listens on the head's loopback only."""
    head_token = launch.user.home / ".ray" / "auth_token"
    assert head_token.read_text() == token and head_token.stat().st_mode & 0o777 == 0o600
    assert onprem.named(onprem.processes_of(launch.user), "raylet")
    listening = [c.laddr.ip for c in psutil.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN
                 and c.laddr.port == launch.dashboard]  # fmt: skip
    assert listening and set(listening) == {"127.0.0.1"}, listening


def _submit(launch: Launch, address: str) -> Path:
    """The smoke sweep (1 trial, 1 epoch) as a job run by the head's user; its output folder."""
    out, cache = launch.user.home / "runs", launch.user.home / "cache"
    overrides = ["formats=[audio]", "budget.trials=1", "budget.epochs=1",
                 "train.max_steps_per_epoch=2", "train.batch_size=8", "probe.heads=[linear]",
                 "search.space.probe_head.choices=[linear]", "probe.random_init_control=false",
                 "probe.mfcc_baseline=false", f"data.cache_dir={cache}"]  # fmt: skip
    sets = [a for item in overrides for a in ("--set", item)]
    env_vars = {"WANDB_MODE": "offline", "RAY_JOB_STOP_SIGNAL": "SIGINT"}
    job = f"mfclr-up-{os.getpid()}"
    # `mfclr`, as the docs submit it: the head's start command puts the venv's bin on the PATH.
    entry = ["mfclr", "sweep", "sweeps/smoke.yaml", "--out", str(out), "--quiet", *sets]
    submit = ray_cli("job", "submit", f"--address={address}", f"--submission-id={job}",
                     "--working-dir", ".", "--runtime-env-json",
                     json.dumps({"env_vars": env_vars}), "--", *entry,
                     env=launch.env, timeout=900)  # fmt: skip
    assert submit.returncode == 0, (submit.stdout + submit.stderr)[-3000:]
    status = ray_cli("job", "status", f"--address={address}", job, env=launch.env)
    assert f"job '{job}' succeeded" in (status.stdout + status.stderr).lower()
    return out / "smoke"


def _check_results(sweep: Path, user: onprem.User) -> None:
    results = json.loads((sweep / "results.json").read_text())
    best = results["best"]["audio"]
    assert best["trial"] == "audio_001" and best["epochs_done"] == 1
    assert [t["trial"] for t in best["trials"]] == ["audio_001"]
    encoder = Path(best["encoders"]["audio"])
    assert encoder == sweep / "best" / "audio.pt" and encoder.stat().st_size > 0
    assert results["rows"][0]["name"] == "audio" and 0 <= results["rows"][0]["accuracy"] <= 1
    # The job ran on the launcher's head, as its user, not as this test's root.
    assert (sweep / "results.json").stat().st_uid == encoder.stat().st_uid == user.uid
    study = optuna.load_study(
        study_name="smoke-audio",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(best["study"])
        ),
    )
    assert [(t.user_attrs["trial"], t.state.name) for t in study.trials] == [
        ("audio_001", "COMPLETE")
    ]
    assert study.best_value == pytest.approx(best[results["validation_metric"]])


def test_ray_up_job_submit_and_ray_down_on_premises(launch: Launch) -> None:
    # The documented first step, on the submitting machine: the cluster's token, private.
    subprocess.run(["bash", "-c", f"umask 077 && {RAY} get-auth-token --generate >/dev/null"],
                   env=launch.env, check=True, capture_output=True)  # fmt: skip
    token = (Path(launch.env["HOME"]) / ".ray" / "auth_token").read_text()
    assert len(token) >= 32

    _launcher(launch, "up", "-y", "--no-config-cache")
    _check_head(launch, token)
    tunnel, address = _tunnel(launch)
    try:
        # The jobs API answers the token only.
        wrong = ray_cli("job", "list", f"--address={address}",
                        env={**launch.env, "RAY_AUTH_TOKEN": "0" * 32})  # fmt: skip
        assert wrong.returncode != 0 and "auth" in (wrong.stdout + wrong.stderr).lower()
        sweep = _submit(launch, address)
    finally:
        stop_node(tunnel)
    _check_results(sweep, launch.user)

    # `ray down` stops the head's Ray (its user's processes) and nothing of any other user.
    others = [p for p in psutil.process_iter(["name", "uids"])
              if p.info["name"] == "raylet" and p.info["uids"].real != launch.user.uid]  # fmt: skip
    down = _launcher(launch, "down", "-y", timeout=300)
    assert "Exception occurred when stopping" not in down, down[-2000:]  # its `ray stop` ran
    end = time.monotonic() + 60
    while onprem.named(onprem.processes_of(launch.user), "raylet", "gcs_server"):
        assert time.monotonic() < end, "ray down left the head's raylet or GCS running"
        time.sleep(1)
    assert all(p.is_running() for p in others)

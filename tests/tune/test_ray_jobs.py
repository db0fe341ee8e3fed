"""A real two-node Ray cluster on this machine (a head and a second node, each with its own temp
dir and one CPU), the smoke sweep submitted with `ray job submit`, its results checked, and only
the nodes this test started stopped (by process id, never `ray stop`)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
from ray_nodes import (  # noqa: E402
    free_ports,
    ray_cli,
    ray_env,
    short_tmp,
    start_node,
    stop_node,
    sweep_entrypoint,
)
from wandb_files import inspect_run, offline_runs  # noqa: E402

pytestmark = pytest.mark.ray
ENV = ray_env()


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    gcs, dash, client, agent_a, agent_b = free_ports(5)
    head_dir, node_dir = short_tmp("mfclr-ray-"), short_tmp("mfclr-ray-")
    logs = Path(head_dir)
    # This cluster's own token, as `ray get-auth-token --generate` makes one: a fresh machine has
    # no ~/.ray/auth_token, and the test must not write into $HOME.
    token = logs / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    ENV["RAY_AUTH_TOKEN_PATH"] = str(token)
    head = start_node(
        [
            "--head",
            f"--port={gcs}",
            "--num-cpus=1",
            "--include-dashboard=true",
            f"--dashboard-port={dash}",
            f"--ray-client-server-port={client}",
            f"--dashboard-agent-listen-port={agent_a}",
            f"--temp-dir={head_dir}",
        ],
        logs / "head.log",
        ENV,
    )
    node = None
    try:
        node = start_node(
            [
                f"--address=127.0.0.1:{gcs}",
                "--num-cpus=1",
                f"--dashboard-agent-listen-port={agent_b}",
                f"--temp-dir={node_dir}",
            ],
            logs / "node.log",
            ENV,
        )
        yield f"http://127.0.0.1:{dash}"
    finally:
        for proc in (node, head):
            if proc is not None:
                stop_node(proc)
        for folder in (head_dir, node_dir):  # session logs of the nodes we started
            shutil.rmtree(folder, ignore_errors=True)


def _ray_cli(*args: str, timeout: float = 60):
    return ray_cli(*args, env=ENV, timeout=timeout)


def test_smoke_sweep_as_a_ray_job_on_two_nodes(cluster: str, tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"  # one machine: a shared filesystem
    # W&B settings travel in the job's runtime env (as an API key would), never in a config.
    env_vars = {"WANDB_MODE": "offline", "RAY_JOB_STOP_SIGNAL": "SIGINT"}
    runtime_env = {"env_vars": {**env_vars, "RAY_JOB_STOP_WAIT_TIME_S": "60"}}
    overrides = [
        "formats=[audio]",
        "budget.trials=1",
        "budget.epochs=1",
        "resources.workers=2",
        "train.max_steps_per_epoch=2",
        "train.batch_size=8",
        "probe.heads=[linear]",
        "search.space.probe_head.choices=[linear]",  # else the final stage compares mlp too
        "probe.random_init_control=false",
        "probe.mfcc_baseline=false",
        f"data.cache_dir={cache}",
    ]
    entry = sweep_entrypoint(out, overrides)
    job_id = f"mfclr-smoke-{os.getpid()}"
    submit = _ray_cli(
        "job",
        "submit",
        f"--address={cluster}",
        f"--submission-id={job_id}",
        "--working-dir",
        ".",
        "--runtime-env-json",
        json.dumps(runtime_env),
        "--",
        *entry,
        timeout=300,
    )
    assert submit.returncode == 0, (submit.stdout + submit.stderr)[-3000:]
    status = _ray_cli("job", "status", f"--address={cluster}", job_id)
    assert f"job '{job_id}' succeeded" in (status.stdout + status.stderr).lower()

    results = json.loads((out / "smoke" / "results.json").read_text())
    best = results["best"]["audio"]
    assert best["trial"] == "audio_001" and best["epochs_done"] == 1
    assert results["rows"][0]["name"] == "audio"
    assert (out / "smoke" / "results.md").is_file() and Path(best["encoders"]["audio"]).is_file()

    # Rank 0 of the trial logged one offline W&B pretrain run; the probe stage one per variant.
    runs = [inspect_run(r) for r in offline_runs(out / "smoke")]
    pretrain = [r for r in runs if r["job_type"] == "pretrain"]
    assert len(pretrain) == 1 and pretrain[0]["group"] == "smoke"
    assert pretrain[0]["run_id"] == "smoke-audio_001"
    assert [h["epoch"] for h in pretrain[0]["history"]] == [1]
    assert "loss" in pretrain[0]["history"][0]
    probes = [r for r in runs if r["job_type"] == "probe"]
    assert [r["name"] for r in probes] == ["audio-linear"]
    # The W&B records hold the numbers of the results file: the probe row, the best trial's
    # validation metric.
    assert probes[0]["summary"]["accuracy"] == pytest.approx(results["rows"][0]["accuracy"])
    assert probes[0]["summary"]["macro_map"] == pytest.approx(results["rows"][0]["macro_map"])
    val = results["validation_metric"]
    assert pretrain[0]["summary"][val] == pytest.approx(best[val])

    # The trial's two DDP workers (one CPU each) ran on the two different nodes.
    actors = _ray_cli(
        "list",
        "actors",
        f"--address={cluster}",
        "--filter",
        "class_name=RayTrainWorker",
        "--detail",
        "--format=json",
    )
    listed = json.loads(actors.stdout[actors.stdout.index("[") :])
    assert len({a["node_id"] for a in listed}) == 2

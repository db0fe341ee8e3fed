"""cluster.yaml passes Ray's own offline config check (no credentials, no network), keeps the
project's promises (pinned image, autoscaling GPU workers, S3 role, closed dashboard port), and
a broken copy is rejected."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

# Private Ray API, hence ray is pinned (2.60.0): what `ray up` runs before it touches the cloud.
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER = Path(__file__).resolve().parents[1] / "cluster.yaml"


def _load() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER.read_text())


def _check(config: dict[str, Any]) -> dict[str, Any]:
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_rays_config_check() -> None:
    prepared = _check(_load())
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_cluster_yaml_keeps_the_projects_promises() -> None:
    cfg = _load()
    nodes = cfg["available_node_types"]
    head, workers = (
        nodes[cfg["head_node_type"]],
        {k: v for k, v in nodes.items() if k != cfg["head_node_type"]},
    )
    # An explicit, pinned image; explicit AMIs (the provider default is an old Ubuntu 18.04).
    assert re.fullmatch(r"rayproject/ray:2\.60\.0-py311-gpu", cfg["docker"]["image"])
    for node in nodes.values():
        assert re.fullmatch(r"ami-[0-9a-f]{8,17}", node["node_config"]["ImageId"])
    # A CPU head that trains nothing; GPU workers that autoscale from zero.
    assert head["resources"].get("GPU", 0) == 0 and head["resources"]["CPU"] == 0
    assert "--num-cpus=0" in " ".join(cfg["head_start_ray_commands"])
    assert workers and all(
        w["resources"]["GPU"] >= 1 and w["min_workers"] == 0 and w["max_workers"] > 0
        for w in workers.values()
    )
    # Workers upload checkpoints to S3 themselves: they need their own instance profile.
    assert all("IamInstanceProfile" in w["node_config"] for w in workers.values())
    # mfclr is installed with the stack pinned in pyproject.toml.
    assert any("pip install" in c and "-e /home/ray/mfclr" in c for c in cfg["setup_commands"])
    pyproject = (CLUSTER.parent / "pyproject.toml").read_text()
    assert '"ray[default,tune,train]==2.60.0"' in pyproject and '"torch==2.11.0"' in pyproject
    # Token auth on every node: the token file from the submitting machine, the mode on start.
    assert cfg["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"
    for cmds in (cfg["head_start_ray_commands"], cfg["worker_start_ray_commands"]):
        assert "export RAY_AUTH_MODE=token;" in [c for c in cmds if "ray start" in c][0]


RAY_PORTS = (6379, 8076, 8265, 10001)  # GCS, object manager, dashboard/jobs API, Ray client
AWS = CLUSTER.parent / "docs" / "aws"


def _opens(rule: dict[str, Any], port: int) -> bool:
    if rule.get("IpProtocol") in ("-1", -1, "all"):
        return True
    return rule.get("FromPort", 0) <= port <= rule.get("ToPort", -1)


def _cidrs(rule: dict[str, Any]) -> list[str]:
    return [r.get("CidrIp") for r in rule.get("IpRanges", [])] + [
        r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])
    ]


def test_nothing_is_open_to_the_internet() -> None:
    cfg = _load()
    # Every node names a security group made beforehand: Ray then creates none (a group Ray
    # creates always gets SSH from 0.0.0.0/0 added, whatever IpPermissions say).
    for node in cfg["available_node_types"].values():
        assert node["node_config"]["SecurityGroupIds"] == ["sg-YOUR-GROUP-ID"]
    in_yaml = cfg["provider"].get("security_group", {}).get("IpPermissions", [])
    ingress = json.loads((AWS / "ssh-ingress.json").read_text())
    for rules in (in_yaml, ingress):
        for rule in rules:
            assert not set(_cidrs(rule)) & {"0.0.0.0/0", "::/0"}, rule
            assert not any(_opens(rule, port) for port in RAY_PORTS), rule
    (ssh,) = ingress
    assert (ssh["FromPort"], ssh["ToPort"], _cidrs(ssh)) == (22, 22, ["YOUR-CIDR"])
    # The jobs API listens on the head's loopback only (`ray dashboard` tunnels to it).
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in yaml.safe_dump(cfg)


def test_instance_profiles_have_least_privilege() -> None:
    cfg = _load()
    profiles = {k: n["node_config"]["IamInstanceProfile"]["Name"]
                for k, n in cfg["available_node_types"].items()}  # fmt: skip
    assert profiles == {"head": "mfclr-ray-head", "gpu_worker": "mfclr-ray-worker"}
    for name in ("ray-head-policy.json", "ray-worker-policy.json"):
        policy = json.loads((AWS / name).read_text())
        for st in policy["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            assert "*" not in actions and not any(a.endswith(":*") for a in actions), st
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            if any(a.startswith("s3:") for a in actions):  # one bucket, never all of S3
                assert all(r.startswith("arn:aws:s3:::YOUR-BUCKET") for r in resources), st
            if st["Resource"] == "*":  # only reads and launches, only in the cluster's region
                assert st["Condition"]["StringEquals"]["aws:RequestedRegion"] == "us-west-2"
    worker = json.loads((AWS / "ray-worker-policy.json").read_text())
    assert not any("ec2:" in json.dumps(st["Action"]) for st in worker["Statement"])


def test_the_wandb_key_reaches_nodes_as_a_file_not_job_metadata() -> None:
    cfg = _load()
    fetch = next(c for c in cfg["setup_commands"] if "ssm get-parameter" in c)
    assert "umask 077" in fetch and "--with-decryption" in fetch
    assert "/home/ray/.config/mfclr/wandb_api_key" in fetch
    docs = "".join(
        (CLUSTER.parent / p).read_text()
        for p in ("README.md", "docs/cluster.md", "docs/tracking.md")
    )
    assert "WANDB_API_KEY_FILE" in docs
    assert '"WANDB_API_KEY": ' not in docs and '\\"WANDB_API_KEY\\"' not in docs


@pytest.mark.parametrize(
    ("breakage", "needle"),
    [
        (
            lambda c: c["available_node_types"]["gpu_worker"]["resources"].update(GPU=0.5),
            "is not of type 'integer'",
        ),
        (lambda c: c.update(head_node_type="nope"), "head_node_type"),
        (lambda c: c["available_node_types"]["gpu_worker"].update(min_workers=9), "max_workers"),
        (lambda c: c.update(max_wrokers=3), "Additional properties"),
        (lambda c: c["available_node_types"]["gpu_worker"].pop("node_config"), "node_config"),
    ],
    ids=["fractional-gpu", "unknown-head-type", "min-above-max", "typo", "no-node-config"],
)
def test_a_broken_copy_is_rejected(breakage: Any, needle: str, tmp_path: Path) -> None:
    broken = _load()
    breakage(broken)
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(broken))
    with pytest.raises(Exception) as err:  # jsonschema.ValidationError or ValueError
        _check(yaml.safe_load(path.read_text()))
    assert needle in str(err.value)


def test_the_aws_cluster_is_hardened() -> None:
    """Launches only the cluster's instance types with its tag, IMDSv2 on every node, deletes
    only under the project's prefix, and the Ray token readable by its owner only."""
    cfg = _load()
    for node in cfg["available_node_types"].values():
        assert node["node_config"]["MetadataOptions"]["HttpTokens"] == "required"
    types = sorted(n["node_config"]["InstanceType"] for n in cfg["available_node_types"].values())
    head = json.loads((AWS / "ray-head-policy.json").read_text())
    for st in head["Statement"]:
        if st["Action"] == "ec2:RunInstances" and str(st["Resource"]).endswith("instance/*"):
            cond = st["Condition"]["StringEquals"]
            assert sorted(cond["ec2:InstanceType"]) == types
            assert cond["aws:RequestTag/ray-cluster-name"] == cfg["cluster_name"]
            assert cond["ec2:MetadataHttpTokens"] == "required"
        elif st["Action"] == "ec2:RunInstances":
            assert "*" not in st["Resource"]
    for name in ("ray-head-policy.json", "ray-worker-policy.json"):
        for st in json.loads((AWS / name).read_text())["Statement"]:
            if "s3:DeleteObject" in st["Action"]:
                assert st["Resource"] == "arn:aws:s3:::YOUR-BUCKET/mfclr/*"
    assert cfg["setup_commands"][0] == "chmod 600 /home/ray/.ray/auth_token"


# ----------------------------------------------------------------------------- on premises

ONPREM = CLUSTER.parent / "cluster-onprem.yaml"


def test_onprem_yaml_passes_rays_config_check() -> None:
    prepared = _check(yaml.safe_load(ONPREM.read_text()))
    assert prepared["provider"]["type"] == "local"
    # Every worker listed joins and stays: min = max = the number of worker_ips.
    (node,) = prepared["available_node_types"].values()
    assert node["min_workers"] == node["max_workers"] == len(prepared["provider"]["worker_ips"])


def test_onprem_yaml_keeps_the_aws_files_promises() -> None:
    cfg, aws = yaml.safe_load(ONPREM.read_text()), _load()
    head, worker = (" ".join(cfg[k]) for k in ("head_start_ray_commands",
                                               "worker_start_ray_commands"))  # fmt: skip
    # The same token auth and closed dashboard as cluster.yaml; a head that takes work.
    for cmds in (cfg["head_start_ray_commands"], cfg["worker_start_ray_commands"]):
        assert "export RAY_AUTH_MODE=token;" in [c for c in cmds if "ray start" in c][0]
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in yaml.safe_dump(cfg)
    assert "--num-cpus" not in head and "--num-cpus" not in worker
    assert (
        cfg["file_mounts"]["~/.ray/auth_token"] == aws["file_mounts"]["/home/ray/.ray/auth_token"]
    )
    # mfclr installed in a venv with the stack pinned in pyproject.toml, on every node; the
    # venv leads the PATH of Ray's commands (`ray down` runs `ray stop` through ~/.bashrc).
    assert any("pip install" in c and "-e ~/mfclr" in c for c in cfg["setup_commands"])
    assert any("mfclr-venv/bin:$PATH' >> ~/.bashrc" in c for c in cfg["setup_commands"])
    assert cfg["file_mounts"]["~/mfclr"] == "." and cfg["rsync_filter"] == [".gitignore"]
    # No S3, no cloud: nothing of the AWS file's storage or credentials.
    assert "s3://" not in ONPREM.read_text() and "aws " not in ONPREM.read_text()


def test_the_launcher_test_names_what_it_misses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onprem

    monkeypatch.setenv("PATH", str(tmp_path))  # no ssh, no rsync on it
    reason = onprem.missing()
    assert reason is not None and "apt-get install " in reason
    assert "openssh-client" in reason and "rsync" in reason

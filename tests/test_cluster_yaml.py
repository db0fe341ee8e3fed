"""cluster.yaml passes Ray's own offline config check (no credentials, no network), keeps the
project's promises (pinned image, autoscaling GPU workers, S3 role, closed dashboard port), and
a broken copy is rejected."""

from __future__ import annotations

import copy
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
    # The dashboard/jobs port is never opened to the internet.
    rules = cfg["provider"]["security_group"]["IpPermissions"]
    assert not any(
        r.get("FromPort", 0) <= port <= r.get("ToPort", -1) for r in rules for port in (8265, 10001)
    )


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

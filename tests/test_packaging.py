"""What a fresh clone builds from: pyproject.toml without deprecated fields, a Makefile whose
comments point inside the repository."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_license_is_an_spdx_string_the_pinned_setuptools_accepts() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # A TOML table (`{ text = "MIT" }`) makes setuptools >= 77 print a deprecation box at install.
    assert project["project"]["license"] == "MIT"
    assert "License ::" not in " ".join(project["project"].get("classifiers", []))
    (setuptools,) = [r for r in project["build-system"]["requires"] if r.startswith("setuptools")]
    minimum = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", setuptools)
    assert minimum and int(minimum[1]) >= 77  # the first release that reads SPDX expressions


def test_files_the_makefile_and_readme_point_to_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "shared/notes" not in makefile
    for ref in re.findall(r"\(([\w./-]+\.md)[,)]", makefile):
        assert (ROOT / ref).is_file(), ref
    assert "## Performance" in (ROOT / "README.md").read_text()


def test_the_cluster_extra_brings_boto3_and_the_cluster_steps_install_it() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    cluster = project["project"]["optional-dependencies"]["cluster"]
    (boto3,) = [r for r in cluster if re.match(r"boto3\b", r)]
    assert re.fullmatch(r"boto3==\d+\.\d+\.\d+", boto3)  # pinned: `ray up` runs with it
    install = "pip install -e '.[cluster]'"
    for doc in ("README.md", "docs/cluster.md"):
        text = (ROOT / doc).read_text()
        assert install in text, doc
        assert text.index(install) < text.index("ray up cluster.yaml"), doc

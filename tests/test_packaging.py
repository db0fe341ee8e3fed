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
    assert "docs/performance.md" in (ROOT / "README.md").read_text()


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "experiments" / "README.md"]  # fmt: skip
RESULTS = [ROOT / "benchmarks" / "results", ROOT / "experiments" / "results"]


def test_the_readme_is_a_manual_and_the_project_has_a_license() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
    assert "MIT" in (ROOT / "LICENSE").read_text()


def test_every_link_and_result_path_in_the_docs_exists() -> None:
    for doc in DOCS:
        text = doc.read_text()
        for ref in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):  # relative markdown links
            assert (doc.parent / ref).exists(), f"{doc.name}: {ref}"
        for ref in re.findall(r"(?:benchmarks|experiments)/results/[\w./-]*[\w/]", text):
            assert (ROOT / ref).exists(), f"{doc.name}: {ref}"


def test_every_result_folder_has_a_manifest_naming_its_files_and_a_doc_naming_it() -> None:
    docs = "".join(d.read_text() for d in DOCS)
    folders = [f for root in RESULTS for f in sorted(root.iterdir()) if f.is_dir()]
    assert folders
    for folder in folders:
        manifest = (folder / "MANIFEST").read_text()
        assert all(k in manifest for k in ("command:", "git:", "machine:")), folder
        for path in folder.rglob("*"):
            if path.is_file() and path.name != "MANIFEST":
                assert path.name in manifest, f"{path} is not in its MANIFEST"
        assert str(folder.relative_to(ROOT)) in docs, f"no document names {folder}"


def test_the_cluster_extra_brings_boto3_and_the_cluster_steps_install_it() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    cluster = project["project"]["optional-dependencies"]["cluster"]
    (boto3,) = [r for r in cluster if re.match(r"boto3\b", r)]
    assert re.fullmatch(r"boto3==\d+\.\d+\.\d+", boto3)  # pinned: `ray up` runs with it
    install = "pip install -e '.[cluster]'"
    text = (ROOT / "docs" / "cluster.md").read_text()
    assert install in text
    assert text.index(install) < text.index("ray up cluster.yaml")

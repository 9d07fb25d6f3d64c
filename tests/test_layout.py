"""The package layout keeps its layers: import-linter's contracts (pyproject.toml) hold, a breach of
them is caught, and every subpackage says what it is for and what it may import."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")
PACKAGES = sorted(p.parent.name for p in (REPO / "runner").glob("*/__init__.py"))


def lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), "--no-cache", "--no-logo"], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"}, timeout=120)


def test_the_import_contracts_hold() -> None:
    done = lint(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("db/engines.py", "from runner.cli import commands", "Layers"),
    ("config/plan.py", "import runner.state.ledger", "Layers"),
    ("move/export.py", "from runner.run.executor import Runner", "Layers"),
    ("state/ledger.py", "import apscheduler.schedulers.background", "APScheduler"),
    ("move/values.py", "from runner.move import export", "No import cycles"),
])
def test_a_breach_of_the_layers_is_caught(tmp_path: Path, module: str, line: str, contract: str) -> None:
    shutil.copytree(REPO / "runner", tmp_path / "runner", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    target = tmp_path / "runner" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    done = lint(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    broken = [ln for ln in done.stdout.splitlines() if " BROKEN" in ln]
    assert any(ln.startswith(contract) for ln in broken), done.stdout


@pytest.mark.parametrize("package", PACKAGES)
def test_every_subpackage_says_what_it_is_for_and_what_it_may_import(package: str) -> None:
    doc = ast.get_docstring(ast.parse((REPO / "runner" / package / "__init__.py").read_text()))
    assert doc and len(doc) > 100
    assert "import" in doc.lower(), f"runner/{package}/__init__.py does not say what it may import"


def test_the_layers_in_the_contract_are_the_packages_there_are() -> None:
    import tomllib

    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c["type"] == "layers")
    named = {m.strip().removeprefix("runner.") for layer in layers for m in layer.split("|")}
    ground = {p.stem for p in (REPO / "runner").glob("*.py") if p.stem not in ("__init__",)}
    assert named == set(PACKAGES) | ground, "every module of runner/ has its layer"


def test_the_readme_says_where_things_live() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Where things live", 1)[1].split("\n## ", 1)[0]
    for package in PACKAGES:
        assert f"runner/{package}/" in section, package
    tests = sorted(p.parent.name for p in (REPO / "tests").glob("*/__init__.py") if p.parent.name != "fixtures")
    for folder in tests:
        assert f"tests/{folder}/" in section or folder == "harness", folder


def test_the_readme_names_every_module_where_things_live() -> None:
    section = (REPO / "README.md").read_text().split("## Where things live", 1)[1].split("\n## ", 1)[0]
    unnamed = [str(p.relative_to(REPO)) for p in sorted((REPO / "runner").rglob("*.py"))
               if p.name != "__init__.py" and f"`{p.name}`" not in section and f"`{p.relative_to(REPO)}`" not in section]
    assert not unnamed, f"README 'Where things live' does not name {unnamed}"

"""The docs and packaging files agree with each other: README's commands exist and CI runs the
README's test command; environment.yml and pyproject.toml pin the same runtime dependencies.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib

import yaml

from tests.fixtures.core import REPO, readme_commands


def _normalise(requirement: str) -> tuple[str, str]:
    """('sqlalchemy', '<2.2,>=2.0.30') from 'SQLAlchemy >= 2.0.30, <2.2' (PEP 503 name, sorted specifiers)."""
    m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$", requirement)
    assert m, requirement
    name = re.sub(r"[-_.]+", "-", m.group(1)).lower()
    spec = ",".join(sorted(part.strip() for part in m.group(2).replace(" ", "").split(",") if part.strip()))
    return name, spec


# PyPI name -> conda-forge name, where they differ. Checked against conda-forge's package index: every other
# dependency has the same name there. conda-forge's `tzdata` is the IANA database itself, not the Python
# module, and its `psycopg` is the driver with its C extension and libpq (what psycopg[binary] brings on PyPI).
CONDA_FORGE_NAMES = {"tzdata": "python-tzdata", "psycopg[binary]": "psycopg"}


_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*(?:\[[^\]]*\])?)(.*)$")


def _pypi_name(requirement: str) -> str:
    """The distribution name with its extras ('psycopg[binary]'), PEP 503 normalised."""
    m = _NAME.match(requirement)
    assert m, requirement
    return re.sub(r"[-_.]+", "-", m.group(1)).lower()


def _conda_forge(requirement: str) -> tuple[str, str]:
    """A pyproject requirement as conda-forge knows it: (conda-forge name, sorted specifiers)."""
    m = _NAME.match(requirement)
    assert m, requirement
    name = _pypi_name(requirement)
    return _normalise(CONDA_FORGE_NAMES.get(name, name) + m.group(2))


def _pyproject_dependencies() -> dict[str, str]:
    """Runtime dependencies and the optional PostgreSQL driver, under their conda-forge names."""
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    reqs = [*data["project"]["dependencies"], *data["project"]["optional-dependencies"]["postgresql"]]
    return dict(_conda_forge(r) for r in reqs)


def _environment() -> dict:
    return yaml.safe_load((REPO / "environment.yml").read_text())


def test_environment_and_pyproject_pin_the_same_runtime_dependencies() -> None:
    conda = [d for d in _environment()["dependencies"] if isinstance(d, str)]
    runtime = dict(_normalise(d) for d in conda if _normalise(d)[0] not in ("python", "pip"))
    assert runtime == _pyproject_dependencies()
    assert all(spec for spec in runtime.values()), "every dependency is pinned"


def test_environment_is_the_etl_runner_env_on_python_311_with_pip() -> None:
    env = _environment()
    assert env["name"] == "etl-runner"
    deps = env["dependencies"]
    assert "python=3.11" in deps
    assert "pip" in deps
    pip_lists = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert pip_lists and any(line in ("-e .", ".") for line in pip_lists[0]), "the env installs the runner"


def test_pypi_names_map_to_conda_forge_names() -> None:
    assert _conda_forge("tzdata>=2024.1") == ("python-tzdata", ">=2024.1")
    assert _conda_forge("psycopg[binary]>=3.1,<4") == ("psycopg", "<4,>=3.1")
    assert _conda_forge("SQLAlchemy>=2.0.30,<2.2") == ("sqlalchemy", "<2.2,>=2.0.30")
    conda = [d for d in _environment()["dependencies"] if isinstance(d, str)]
    assert "tzdata" not in {_normalise(d)[0] for d in conda}, "conda-forge's tzdata is not the Python module"


def test_the_postgresql_extra_is_psycopg_3_and_the_test_tools_include_it() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert [_pypi_name(r) for r in extras["postgresql"]] == ["psycopg[binary]"]
    assert set(extras["postgresql"]) <= set(extras["test"])


def test_normalise() -> None:
    assert _normalise("SQLAlchemy >= 2.0.30, <2.2") == ("sqlalchemy", "<2.2,>=2.0.30")
    assert _normalise("PyYAML_x.y>=6") == ("pyyaml-x-y", ">=6")
    assert _normalise("pip") == ("pip", "")


def _scripts_of(command: str) -> list[str]:
    """The programs a shell line starts, one per && step (environment assignments skipped)."""
    out = []
    for step in command.split("&&"):
        words = [w for w in shlex.split(step) if not re.match(r"^[A-Z_][A-Z0-9_]*=", w)]
        out.append(words[0])
    return out


def test_readme_commands_exist() -> None:
    run, test = readme_commands()
    for program in _scripts_of(run) + _scripts_of(test):
        if program.startswith(".venv/"):
            continue  # made by scripts/setup, the step before it
        path = REPO / program
        assert path.is_file() and os.access(path, os.X_OK), f"README names {program}, which is not an executable"
    assert "--job nightly_report" in run and (REPO / "jobs" / "nightly_report.yml").is_file()
    assert _scripts_of(run)[0] == "scripts/setup"


def test_ci_runs_the_readmes_test_command() -> None:
    _, test = readme_commands()
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert any(line == test or line.startswith(test + " ") or line == f"exec {test}" for line in ci), (test, ci)

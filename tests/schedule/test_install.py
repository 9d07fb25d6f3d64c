"""--crontab --install / --uninstall: the block's text from a table (pure), then against the real
`crontab` binary for a throwaway user (RUNNER_CRONTAB_COMMAND="crontab -u USER"), so the crontab of
whoever runs the tests is never touched: the user's own lines are kept, a backup is left, a crontab
that does not parse is refused by crontab and nothing changes."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from runner.schedule.install import COMMAND_ENV, CrontabError, merged, removed
from tests.schedkit import SchedProject

ROOT = "/opt/etl"
BODY = "SHELL=/bin/sh\n*/5 * * * * cd /opt/etl && run --due\n\nCRON_TZ=Asia/Shanghai\n0 6 * * * cd /opt/etl && x\n"

MERGES = [
    ("empty crontab: the block alone, CRON_TZ put back for later lines",
     "", ["# BEGIN runner /opt/etl", "SHELL=/bin/sh", "CRON_TZ=Asia/Shanghai", "CRON_TZ=UTC", "# END runner /opt/etl"]),
    ("the user's lines stay, the block goes after them",
     "MAILTO=me\n0 1 * * * backup\n", ["MAILTO=me", "0 1 * * * backup", "", "# BEGIN runner /opt/etl"]),
    ("a SHELL and CRON_TZ of the user's before the block are put back after it",
     "SHELL=/bin/bash\nCRON_TZ=Europe/Berlin\n0 1 * * * b\n",
     ["CRON_TZ=Europe/Berlin", "0 1 * * * b", "", "# BEGIN runner /opt/etl", "CRON_TZ=UTC", "SHELL=/bin/sh",
      "SHELL=/bin/bash", "CRON_TZ=Europe/Berlin", "# END runner /opt/etl"]),
    ("an old block is replaced in place, the lines after it kept",
     "0 1 * * * a\n# BEGIN runner /opt/etl\nold line\n# END runner /opt/etl\n0 2 * * * b\n",
     ["0 1 * * * a", "# BEGIN runner /opt/etl", "# END runner /opt/etl", "0 2 * * * b"]),
    ("another project's block is left alone",
     "# BEGIN runner /srv/other\n1 1 * * * o\n# END runner /srv/other\n",
     ["# BEGIN runner /srv/other", "1 1 * * * o", "# END runner /srv/other", "", "# BEGIN runner /opt/etl"]),
]


@pytest.mark.parametrize("current, expected", [m[1:] for m in MERGES], ids=[m[0] for m in MERGES])
def test_the_block_replaces_only_itself(current: str, expected: list[str]) -> None:
    lines = merged(current, ROOT, BODY, "UTC").splitlines()
    it = iter(lines)
    assert all(any(line == want for line in it) for want in expected), lines  # in this order
    assert "old line" not in lines and lines.count("# BEGIN runner /opt/etl") == 1
    back, found = removed("\n".join(lines) + "\n", ROOT)
    assert found and back == (current.replace("# BEGIN runner /opt/etl\nold line\n# END runner /opt/etl\n", "")
                              or "")


@pytest.mark.parametrize("broken", ["# BEGIN runner /opt/etl\n0 1 * * * a\n",
                                    "# END runner /opt/etl\n# BEGIN runner /opt/etl\n",
                                    "# BEGIN runner /opt/etl\n# END runner /opt/etl\n# BEGIN runner /opt/etl\n"])
def test_a_block_that_is_not_whole_is_refused(broken: str) -> None:
    with pytest.raises(CrontabError, match="is not one BEGIN line followed by one END line"):
        merged(broken, ROOT, BODY, "UTC")


@pytest.fixture
def crontab_user(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A throwaway user whose crontab the tests may replace (creating one needs root)."""
    if shutil.which("crontab") is None:
        pytest.fail("crontab not found: scripts/test installs the cron package (apt-get install cron)")
    if os.geteuid() != 0:
        pytest.skip("needs root to create a throwaway user for crontab -u (CI runs as root)")
    name = f"rct{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    monkeypatch.setenv(COMMAND_ENV, f"crontab -u {name}")
    try:
        yield name
    finally:
        subprocess.run(["crontab", "-u", name, "-r"], capture_output=True)
        subprocess.run(["userdel", name], capture_output=True)


def crontab_of(user: str) -> str:
    done = subprocess.run(["crontab", "-u", user, "-l"], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else ""


MINE = "MAILTO=ops@example.com\n# my backup\n15 1 * * * /usr/local/bin/backup --all\n"


def test_install_and_uninstall_with_the_real_crontab(tmp_path: Path, crontab_user: str) -> None:
    p = SchedProject(tmp_path / "proj", {"wh": "sqlite:///var/wh.db"})
    p.job("nightly", {"schedule": "30 2 * * *", "database": "wh", "tasks": [{"name": "t", "sql": "SELECT 1"}]})
    subprocess.run(["crontab", "-u", crontab_user, "-"], input=MINE, text=True, check=True)
    env = {COMMAND_ENV: f"crontab -u {crontab_user}"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(p.args(*args), cwd="/", capture_output=True, text=True, timeout=60,
                              env={**os.environ, **env})

    done = run("--crontab", "--install")
    assert done.returncode == 0, done.stderr
    assert "installed the cron lines of" in done.stdout and "every other line was kept" in done.stdout
    installed = crontab_of(crontab_user)
    assert installed.startswith(MINE), installed
    root = str(p.root)
    assert f"# BEGIN runner {root}\n" in installed and installed.rstrip().endswith(f"# END runner {root}")
    assert "--due --job nightly" in installed
    backups = list((p.root / "var" / "crontab-backups").iterdir())
    assert [b.read_text() for b in backups] == [MINE]
    assert stat.S_IMODE(backups[0].stat().st_mode) == 0o600

    again = run("--crontab", "--install")
    assert again.returncode == 0 and "nothing changed" in again.stdout
    p.job("hourly", {"schedule": "0 * * * *", "database": "wh", "tasks": [{"name": "t", "sql": "SELECT 1"}]})
    assert run("--crontab", "--install").returncode == 0
    updated = crontab_of(crontab_user)
    assert updated.count(f"# BEGIN runner {root}") == 1 and "--due --job hourly" in updated and updated.startswith(MINE)

    subprocess.run(["crontab", "-u", crontab_user, "-"], input=updated + "0 3 * * * /usr/local/bin/later\n",
                   text=True, check=True)
    gone = run("--crontab", "--uninstall")
    assert gone.returncode == 0 and "removed the cron lines" in gone.stdout, gone.stderr
    assert crontab_of(crontab_user) == MINE + "0 3 * * * /usr/local/bin/later\n"
    assert "nothing changed" in run("--crontab", "--uninstall").stdout


def test_a_crontab_that_crontab_refuses_changes_nothing(tmp_path: Path, crontab_user: str) -> None:
    """A line the real crontab cannot read (here: a command too long for cron, through a root of 3,000
    characters written into the lines; a line break there is refused by the runner itself) is refused by
    crontab, and the user's crontab stays as it was."""
    p = SchedProject(tmp_path / "proj", {"wh": "sqlite:///var/wh.db"})
    p.job("nightly", {"schedule": "30 2 * * *", "database": "wh", "tasks": [{"name": "t", "sql": "SELECT 1"}]})
    subprocess.run(["crontab", "-u", crontab_user, "-"], input=MINE, text=True, check=True)
    env = {**os.environ, COMMAND_ENV: f"crontab -u {crontab_user}", "RUNNER_CRONTAB_ROOT": "/opt/" + "a" * 3000}
    done = subprocess.run(p.args("--crontab", "--install"), cwd="/", capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "refused the new crontab, which was not installed" in done.stderr, done.stderr
    assert crontab_of(crontab_user) == MINE

"""Hostile and broken configuration never takes the runner down: YAML alias bombs, deep nesting, huge
files, bytes that are not UTF-8, NUL characters, keys given twice, file names no job can have, over-long
--job names, passwords written without URL-encoding. Each is a problem naming the file (and line) and
what to do, found in bounded time and memory, and a valid job beside the broken files still runs:
with --job, --due, --list, and in the daemon, at start-up and across a SIGHUP.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from runner.config.jobs import load_job, load_jobs
from runner.config.project import load_project
from runner.errors import ConfigError
from runner.state.slots import SlotLedger
from tests.schedkit import SchedProject, seen_since, stop, wait_for

VALID = "schedule: '* * * * * *'\ndatabase: wh\ntasks:\n  - name: t\n    sql: SELECT 1\n"
# The 526-byte file of the report: nine levels of nine aliases, 9**9 strings once expanded.
BOMB = "database: wh\ntasks:\n  - name: t\n    sql: SELECT 1\nlol:\n" + "\n".join(
    [f"  - &a0 [{', '.join(['lol'] * 9)}]"]
    + [f"  - &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]) + "\n"
HOSTILE: dict[str, tuple[bytes, int | None, str]] = {  # file name -> (bytes, line, what the problem says)
    "bomb.yml": (BOMB.encode(), 7, "aliases are not supported (*a0): repeat the value instead"),
    "deep_block.yml": ("".join("  " * i + f"k{i}:\n" for i in range(400)).encode(), 64,
                       "nested more than 64 levels deep"),
    "deep_flow.yml": (("tasks: " + "[" * 20000 + "]" * 20000).encode(), 1, "nesting depth"),
    "latin1.yml": ("database: wh\ntasks:\n  - name: café\n".encode("latin-1"), 3,
                   "not UTF-8 text: byte 0xe9 at column 14 cannot be read; save the file as UTF-8"),
    "nul.yml": (b"database: wh\ntasks:\x00\n", 2, "character #x0000 is not allowed in YAML"),
    "two_sql.yml": (b"database: wh\ntasks:\n  - name: t\n    sql: DELETE FROM t\n    sql: SELECT 1\n", 5,
                    "key 'sql' is given twice (first at line 4)"),
    "two_docs.yml": (b"database: wh\n---\ndatabase: wh\n", 2, "expected a single document"),
    "my job.yml": (VALID.encode(), None, "the file name cannot be a job name"),
    "répertoire.yml": (VALID.encode(), None, "the file name cannot be a job name"),
    "huge.yml": (b"database: wh\ntasks:\n  - name: t\n    sql: |\n" + b"      SELECT 1;\n" * 1_200_000, None,
                 "file is larger than 16 MB"),
}


def write_hostile(jobs: Path) -> None:
    for name, (data, _, _) in HOSTILE.items():
        (jobs / name).write_bytes(data)
    (jobs / "folder.yml").mkdir()


@pytest.fixture
def hostile(tmp_path: Path) -> SchedProject:
    project = SchedProject(tmp_path, {"wh": "sqlite:///var/wh.db"})
    project.job("valid", {"schedule": "0 * * * *", "database": "wh",
                          "tasks": [{"name": "t", "sql": "CREATE TABLE IF NOT EXISTS ran (x INT)"}]})
    write_hostile(tmp_path / "jobs")
    return project


def test_each_hostile_file_is_a_named_problem_found_in_bounded_time_and_memory(hostile: SchedProject) -> None:
    project = load_project(hostile.root / "conf", env={})
    tracemalloc.start()
    started = time.perf_counter()
    try:
        jobs, problems = load_jobs(project)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sorted(jobs) == ["valid"]
    assert seconds < 3, f"reading the hostile files took {seconds:.1f}s"
    assert peak < 120 * 1024 * 1024, f"reading the hostile files took {peak / 1e6:.0f} MB"  # huge.yml is 19 MB
    for name, (_, line, fragment) in HOSTILE.items():
        found = [p for p in problems if p.file == f"jobs/{name}"]
        assert found and any(fragment in p.message and p.line == line for p in found), (name, found)
    assert any(p.file == "jobs/folder.yml" and "not a regular file" in p.message for p in problems)


def test_names_a_file_system_cannot_hold_and_paths_are_unknown_jobs(hostile: SchedProject) -> None:
    project = load_project(hostile.root / "conf", env={})
    for name in ("x" * 300, "../conf/databases", "a/b"):
        with pytest.raises(ConfigError) as info:
            load_job(project, name)
        assert "unknown job" in str(info.value) and "see --list" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_job(project, "my job")
    assert "rename the file (e.g. my_job.yml)" in str(info.value)


def limited(memory_mb: int = 1500):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    return apply


def run(project: SchedProject, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(project.args("--jobs", str(project.root / "jobs"), *args), capture_output=True, text=True,
                          timeout=60, preexec_fn=limited(), cwd="/")
    took = time.monotonic() - started
    assert "Traceback" not in done.stderr and "unexpected error" not in done.stderr, done.stderr
    assert took < 20, f"{args} took {took:.1f}s"
    return done, took


def test_the_valid_job_beside_them_still_runs_and_every_command_names_the_problems(hostile: SchedProject) -> None:
    check, _ = run(hostile, "--check")
    assert check.returncode == 2
    for name in HOSTILE:
        assert f"error: jobs/{name}" in check.stdout, name
    listed, _ = run(hostile, "--list")
    assert listed.returncode == 0 and "valid" in listed.stdout
    assert f"{len(HOSTILE) + 1} job file(s) invalid; run --check for details" in listed.stdout
    alone, _ = run(hostile, "--job", "valid")
    assert alone.returncode == 0, alone.stderr
    seen_since(f"sqlite:///{hostile.root / 'var' / 'state.db'}", ["valid"], datetime.now(timezone.utc) - timedelta(hours=2))
    due, _ = run(hostile, "--due")
    assert due.returncode == 2, due.stderr  # the valid job ran; the invalid files are reported
    assert "valid" in due.stdout and "success" in due.stdout
    assert "jobs/bomb.yml:7: aliases are not supported" in due.stderr
    long_name, _ = run(hostile, "--job", "x" * 5000)
    assert long_name.returncode == 2 and "unknown job 'xxxx" in long_name.stderr
    odd, _ = run(hostile, "--job", "my job")
    assert odd.returncode == 2 and "the file name cannot be a job name" in odd.stderr


def test_the_daemon_starts_with_the_valid_jobs_and_a_sighup_with_broken_files_keeps_them(tmp_path: Path) -> None:
    project = SchedProject(tmp_path, {"wh": "sqlite:///var/wh.db"})
    project.job("tick", {"schedule": "* * * * * *", "database": "wh", "tasks": [{"name": "t", "sql": "SELECT 1"}]})
    write_hostile(tmp_path / "jobs")
    ledger = SlotLedger(f"sqlite:///{tmp_path / 'var' / 'state.db'}")
    log = tmp_path / "daemon.log"
    daemon = project.start("--scheduler", log=log)
    try:
        wait_for("a run of the valid job", lambda: [r for r in ledger.slot_runs("tick") if r["status"] == "success"],
                 30)
        (tmp_path / "jobs" / "tick.yml").write_bytes(HOSTILE["latin1.yml"][0])  # its file turns invalid too
        (tmp_path / "jobs" / "more.yml").write_bytes(BOMB.encode())
        daemon.send_signal(signal.SIGHUP)
        wait_for("the reload", lambda: "reload: " in log.read_text(), 30)
        reloaded = time.monotonic()
        before = len(ledger.slot_runs("tick"))
        wait_for("runs after the reload", lambda: len(ledger.slot_runs("tick")) >= before + 2, 30)
        assert daemon.poll() is None and time.monotonic() - reloaded < 30
        assert stop(daemon) == 0
    finally:
        stop(daemon, signal.SIGKILL)
        ledger.dispose()
    text = log.read_text()
    assert "Traceback" not in text, text
    for name in HOSTILE:
        assert f"jobs/{name}" in text, name
    assert "reload: jobs/tick.yml:3: not UTF-8 text" in text and "reload: jobs/more.yml:7: aliases" in text
    assert "job(s) tick keep the definition loaded before" in text


# ------------------------------------------------------------------------------------- conf files

def test_two_databases_of_one_name_name_both_lines(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "databases.yml").write_text("wh:\n  url: sqlite:///a.db\nshop:\n  url: sqlite:///b.db\n"
                                                     "wh:\n  url: sqlite:///c.db\n")
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path / "conf", env={})
    assert str(info.value) == ("conf/databases.yml:5 [wh]: key 'wh' is given twice (first at line 1): keep one "
                               "(YAML would silently use the last)")


@pytest.mark.parametrize("password", ["Pq@Zx", "Pq@Zx:Wv/Rt%", "Ab:Cd@Ef/Gh", "@@@Kj", "Xy@Yz?Zq"])
def test_a_password_written_without_url_encoding_is_hidden_and_the_fix_named(tmp_path: Path,
                                                                              password: str) -> None:
    (tmp_path / "conf").mkdir()
    url = f"mysql+pymysql://etl:{password}@db.example:3306/warehouse"
    (tmp_path / "conf" / "databases.yml").write_text(f"wh:\n  url: '{url}'\n")
    (tmp_path / "conf" / "runner.yml").write_text(f"state_url: '{url}'\n")
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path / "conf", env={})
    text = str(info.value)
    assert len(info.value.problems) == 2
    assert "URL-encode @ : / % in a password (@ as %40" in text
    assert "etl:***@db.example:3306/warehouse" in text
    for fragment in {password, *password.split("@"), *password.split(":")} - {""}:
        if len(fragment) > 1:
            assert fragment not in text.replace("etl:***@db.example:3306/warehouse", ""), fragment

"""Secrets for cron: an env_file (dotenv, read with python-dotenv) fills ${VAR} in conf/ for a process
started with an empty environment, its values never reach output, logs or the ledger, and --check warns
when others can read it; MySQL option files (connect_args: {read_default_file: ...}) and URL-encoded
passwords, against the private MariaDB with a real password."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.fixtures.core import REPO, clean_env, run_main, write_project
from tests.harness.mariadb import PrivateMariaDB

pytestmark = pytest.mark.usefixtures("clean_env")
assert clean_env

PASSWORD = "Env:file@pw/9%x"  # every character a url must encode
JOB = """\
database: warehouse
tasks:
  - name: t
    sql: INSERT INTO seen VALUES (:run_date)
"""


@pytest.fixture
def etl_user(mdb: PrivateMariaDB, fresh_db: str):
    conn = mdb.connect(db=fresh_db, autocommit=True)
    name = f"etl_{fresh_db[-6:]}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE USER '{name}'@'%%' IDENTIFIED BY %s", (PASSWORD,))
        cur.execute(f"GRANT ALL ON `{fresh_db}`.* TO '{name}'@'%'")
        cur.execute("CREATE TABLE seen (d DATE)")
    yield name
    with conn.cursor() as cur:
        cur.execute(f"DROP USER '{name}'@'%'")
    conn.close()


def test_an_env_file_serves_a_run_with_an_empty_environment(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str,
                                                            etl_user: str) -> None:
    url = f"mysql+pymysql://{etl_user}:{quote(PASSWORD, safe='')}@{mdb.host}:{mdb.port}/{fresh_db}"
    project = write_project(tmp_path, {"cronjob": JOB, "broken": JOB.replace("seen", "no_such_table")},
                            databases='warehouse: {url: "${WH_URL}"}\n',
                            runner="timezone: UTC\nenv_file: conf/.env\n")
    env_file = project / "conf" / ".env"
    env_file.write_text(f"# for cron\nWH_URL={url}\nAPI_TOKEN=tok-3141592653\n")
    env_file.chmod(0o644)
    code, out = run_main(project, "--check")
    assert code == 0 and "warning: conf/.env (env_file) is readable by others (mode 644), and it holds secrets: " \
                         "chmod 600 conf/.env" in out, out
    env_file.chmod(0o600)
    assert "warning" not in run_main(project, "--check")[1]

    cron_env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}  # what cron gives a job: almost nothing
    ran = [subprocess.run([sys.executable, "-m", "runner", "--conf", str(project / "conf"), *args], cwd="/",
                          env=cron_env, capture_output=True, text=True, timeout=60)
           for args in (["--job", "cronjob"], ["--job", "broken"], ["--history", "--format", "json"], ["--history"])]
    assert [r.returncode for r in ran] == [0, 1, 0, 0], [r.stderr for r in ran]
    everything = "".join(r.stdout + r.stderr for r in ran)
    assert "no_such_table" in everything
    for secret in (PASSWORD, quote(PASSWORD, safe=""), "tok-3141592653"):
        assert secret not in everything
        assert secret.encode() not in (project / "var" / "runner-state.db").read_bytes()
    conn = mdb.connect(db=fresh_db)
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM seen")
        assert cur.fetchone()[0] == 1
    conn.close()


def test_the_environment_wins_over_the_env_file_and_a_missing_file_is_a_problem(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    project = write_project(tmp_path, {"two": JOB.replace("INSERT INTO seen VALUES (:run_date)", "SELECT 1")},
                            databases='warehouse: {url: "${WH_URL}"}\n', runner="env_file: conf/.env\n")
    code, out = run_main(project, "--check")
    assert code == 2 and "conf/runner.yml:1 [env_file]: env_file conf/.env not found" in out, out
    (project / "conf" / ".env").write_text("WH_URL=sqlite:///var/from_file.db\n")
    monkeypatch.setenv("WH_URL", "sqlite:///var/from_env.db")
    assert run_main(project, "--job", "two")[0] == 0
    assert (project / "var" / "from_env.db").exists() and not (project / "var" / "from_file.db").exists()


def test_a_mysql_option_file_holds_user_and_password(tmp_path: Path, mdb: PrivateMariaDB, fresh_db: str,
                                                   etl_user: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    option_file = tmp_path / ".my.cnf"
    option_file.write_text(f'[client]\nuser={etl_user}\npassword="{PASSWORD}"\n')
    option_file.chmod(0o600)
    databases = (f"warehouse:\n  url: mysql+pymysql://@{mdb.host}:{mdb.port}/{fresh_db}\n"
                 "  connect_args: {read_default_file: ~/.my.cnf}\n")
    project = write_project(tmp_path / "p", {"cronjob": JOB}, databases=databases)
    code, out = run_main(project, "--check")
    assert code == 0 and "warning" not in out, out
    assert run_main(project, "--job", "cronjob")[0] == 0
    (run,) = json.loads(run_main(project, "--history", "--format", "json")[1])
    assert run["status"] == "success"
    option_file.chmod(0o644)
    assert "~/.my.cnf is readable by others (mode 644), and it holds a password" in run_main(project, "--check")[1]
    option_file.unlink()
    code, out = run_main(project, "--check")
    assert code == 2 and "option file ~/.my.cnf cannot be read" in out
    assert os.environ["HOME"] == str(tmp_path)

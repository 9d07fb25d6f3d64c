"""`web:` in conf/runner.yml: read and checked like every other setting (file, key, line, what to do),
and the token joins the secrets no log line shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config.project import load_project
from runner.config.urls import passwords
from runner.errors import ConfigError
from runner.model import WebSpec
from tests.fixtures.core import clean_env, run_main, write_project  # noqa: F401 - fixture

TOKEN = "a-token-of-some-length-42"


def project(tmp_path: Path, runner: str) -> Path:
    return write_project(tmp_path, {"one": "database: warehouse\ntasks:\n  - name: t\n    sql: SELECT 1\n"},
                         runner=runner)


@pytest.mark.parametrize("runner, web", [
    ("timezone: UTC\n", None),
    ("web: {}\n", WebSpec("127.0.0.1", 8765, "")),
    ('web: {listen: "0.0.0.0:9000"}\n', WebSpec("0.0.0.0", 9000, "")),
    ('web: {listen: "[::1]:8080", token: "' + TOKEN + '"}\n', WebSpec("::1", 8080, TOKEN)),
    ("web: {listen: 8000}\n", WebSpec("127.0.0.1", 8000, "")),
    ('web: {token: "${RUNNER_WEB_TOKEN:-}"}\n', WebSpec("127.0.0.1", 8765, "")),
])
def test_web_settings(tmp_path: Path, clean_env: None, runner: str, web: WebSpec | None) -> None:  # noqa: F811
    assert load_project(project(tmp_path, runner) / "conf").settings.web == web


def test_the_token_comes_from_the_environment(tmp_path: Path, clean_env: None,  # noqa: F811
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    root = project(tmp_path, 'web: {token: "${RUNNER_WEB_TOKEN}"}\n')
    with pytest.raises(ConfigError) as exc:
        load_project(root / "conf")
    assert "RUNNER_WEB_TOKEN is not set" in str(exc.value)
    monkeypatch.setenv("RUNNER_WEB_TOKEN", TOKEN)
    p = load_project(root / "conf")
    assert p.settings.web == WebSpec(token=TOKEN) and TOKEN in passwords(p)


@pytest.mark.parametrize("runner, says", [
    ('web: {listen: "nowhere"}\n', "conf/runner.yml:1 [web.listen]: invalid listen address 'nowhere': write HOST:PORT"),
    ('web: {listen: "127.0.0.1:70000"}\n', "[web.listen]: invalid listen address '127.0.0.1:70000'"),
    # metrics.listen is read by the same code, with the same message
    ('metrics: {listen: "nowhere"}\n', "conf/runner.yml:1 [metrics.listen]: invalid listen address 'nowhere': write "
                                       "HOST:PORT such as 127.0.0.1:9464"),
    ('metrics: {listen: "127.0.0.1:70000"}\n', "[metrics.listen]: invalid listen address '127.0.0.1:70000'"),
    ('metrics: {listen: "::1:9464"}\n', "[metrics.listen]: invalid listen address '::1:9464': write HOST:PORT such as "
                                        "127.0.0.1:9464 (loopback), [::1]:9464 for IPv6"),
    ('web: {listen: "127.0.0.1:0"}\n', "[web.listen]: invalid listen address '127.0.0.1:0'"),
    ('web: {token: "short"}\n', "[web.token]: the token is too short to be a secret (5 characters): use at least 16"),
    ("web: {port: 80}\n", "[web.port]: unknown key 'port' (known keys: listen, token)"),
    ("web: on\n", "[web]: must be a mapping of keys, got bool"),
])
def test_web_and_metrics_settings_that_are_wrong_are_problems_check_names(tmp_path: Path, clean_env: None,  # noqa: F811
                                                              runner: str, says: str) -> None:
    code, out = run_main(project(tmp_path, runner), "--check")
    assert code == 2
    assert says in out


def test_a_token_that_slips_into_a_log_line_is_masked(tmp_path: Path, clean_env: None,  # noqa: F811
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    table = TOKEN.replace("-", "_")
    job = f"database: warehouse\ntasks:\n  - name: t\n    sql: SELECT * FROM {table}\n"
    root = write_project(tmp_path, {"leak": job},
                         runner=f'web: {{token: "{table}"}}\n')
    code, _ = run_main(root, "--job", "leak")
    assert code == 1
    err = capfd.readouterr().err
    assert "SELECT * FROM ***" in err and table not in err


def test_metrics_and_web_read_listen_alike(tmp_path: Path, clean_env: None) -> None:  # noqa: F811
    p = load_project(project(tmp_path, 'metrics: {listen: "[::1]:9464"}\nweb: {listen: "8765"}\n') / "conf")
    assert p.settings.metrics_listen == ("::1", 9464) and (p.settings.web.host, p.settings.web.port) == ("127.0.0.1", 8765)

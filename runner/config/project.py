"""conf/runner.yml and conf/databases.yml: the settings and named databases of a project.

Every problem is reported at once (file, key, line, what to do); nothing here touches a database.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

from runner.config import notify as notify_keys
from runner.config.checks import Checker, display, expand_vars
from runner.config.drivers import missing_driver, with_default_driver
from runner.config.yamlfile import KeyPath, YamlDoc, read_yaml
from runner.errors import ConfigError, Problem
from runner.model import Database, PoolSpec, Project, Settings, WebSpec

POOL_KEYS = {"size", "max_overflow", "timeout", "recycle", "pre_ping", "ping_skip_ms", "leak_seconds"}
DB_KEYS = {"url", "pool", "connect_args", "markers"}
SETTINGS_KEYS = {"timezone", "state_url", "retry", "log_format", "log_dir", "misfire_grace", "stop_grace", "notify",
                 "metrics", "ping_timeout", "history_days", "env_file", "web"}
WEB_KEYS = {"listen", "token"}
TOKEN_MIN = 16
# Variables of an env_file whose values are kept out of every log and message, as passwords are.
_SECRET_NAME = re.compile(r"PASS|PWD|SECRET|TOKEN|KEY|CREDENTIAL", re.IGNORECASE)


def default_conf_dir() -> Path:
    return Path(os.environ.get("RUNNER_CONF") or "conf")


def default_jobs_dir(conf_dir: Path) -> Path:
    env = os.environ.get("RUNNER_JOBS")
    return Path(env) if env else conf_dir.resolve().parent / "jobs"


def env_override_name(db_name: str) -> str:
    return "RUNNER_DB_" + re.sub(r"[^A-Za-z0-9]", "_", db_name).upper() + "_URL"


def resolve_url(url: str, root: Path) -> str:
    """Make a relative SQLite file path absolute against the project root (cron starts jobs from /); a
    `postgresql://` url gets its default driver, psycopg 3."""
    url = with_default_driver(url)
    m = re.match(r"^(sqlite(?:\+\w+)?):///(.*)$", url)
    if not m or not m.group(2) or m.group(2).startswith((":memory:", "/")) or m.group(2).startswith("file:"):
        return url
    path, _, query = m.group(2).partition("?")
    full = (root / path).resolve()
    return f"{m.group(1)}:///{full}" + (f"?{query}" if query else "")


def load_project(conf_dir: Path | None = None, jobs_dir: Path | None = None,
                 env: Mapping[str, str] | None = None, collect: list[Problem] | None = None) -> Project:
    """Read conf/runner.yml and conf/databases.yml. Raises ConfigError with every problem found, or,
    given `collect`, adds them there and returns what is valid (so --check can go on to the jobs)."""
    env = os.environ if env is None else env
    conf_dir = (conf_dir or default_conf_dir()).resolve()
    root = conf_dir.parent
    jobs_dir = (jobs_dir or default_jobs_dir(conf_dir)).resolve()
    problems: list[Problem] = []
    if not conf_dir.is_dir():
        raise ConfigError(Problem(str(conf_dir), "", "configuration folder not found: pass --conf DIR or set "
                                  "RUNNER_CONF to the folder holding runner.yml and databases.yml"))
    settings_path = conf_dir / "runner.yml"
    # Without runner.yml every setting has its default, but RUNNER_STATE_URL still applies.
    settings_doc = _read(settings_path, root, problems) if settings_path.exists() else \
        YamlDoc(display(settings_path, root), None)
    env, secrets = _with_env_file(settings_doc, root, env, problems)
    settings = _load_settings(settings_doc, root, env, problems)
    # A database whose driver is missing stops only the jobs that use it (load_job says so; --check's
    # lint names the database itself).
    databases = _load_databases(conf_dir, root, env, problems)
    if problems and collect is None:
        raise ConfigError(problems)
    if collect is not None:
        collect.extend(problems)
    return Project(root=root, conf_dir=conf_dir, jobs_dir=jobs_dir, settings=settings, databases=databases,
                   secrets=secrets)


def _read(path: Path, root: Path, problems: list[Problem]) -> YamlDoc | None:
    try:
        return read_yaml(path, display(path, root))
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None


def _read_expanded(path: Path, root: Path, env: Mapping[str, str], problems: list[Problem]) -> YamlDoc | None:
    doc = _read(path, root, problems)
    if doc is not None:
        doc.data = _expand_tree(doc, doc.data, (), env, problems)
    return doc


def env_file_path(value: str, root: Path) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else root / path


def _with_env_file(doc: YamlDoc | None, root: Path, env: Mapping[str, str],
                   problems: list[Problem]) -> tuple[Mapping[str, str], tuple[str, ...]]:
    """The environment that fills ${VAR} in conf/: the variables of `env_file` (a dotenv file, read with
    python-dotenv) under those of the process, which win, as with dotenv's load_dotenv. Cron starts
    jobs with an almost empty environment, so the file is where their secrets live. Returns the values
    to keep out of logs too (those of variables named like a password, token or key)."""
    value = doc.data.get("env_file") if doc is not None and isinstance(doc.data, dict) else None
    if value is None:
        return env, ()
    if not isinstance(value, str) or not value.strip():
        problems.append(Problem(doc.file, "env_file", f"invalid value {value!r}: the path of a dotenv file, "  # type: ignore[union-attr]
                                "e.g. conf/.env", doc.line(("env_file",))))  # type: ignore[union-attr]
        return env, ()
    missing: list[str] = []
    path = env_file_path(expand_vars(value, env, missing), root)
    if not path.is_file():
        problems.append(Problem(doc.file, "env_file", f"env_file {display(path, root)} not found: create it "  # type: ignore[union-attr]
                                "(lines of NAME=value, mode 600) or remove the key", doc.line(("env_file",))))  # type: ignore[union-attr]
        return env, ()
    from dotenv import dotenv_values  # only projects with an env_file pay for it

    try:
        found = {k: v for k, v in dotenv_values(path, encoding="utf-8").items() if v is not None}
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(display(path, root), "", f"cannot read env_file: {exc}"))
        return env, ()
    secrets = tuple(v for k, v in found.items() if _SECRET_NAME.search(k) and v)
    return {**found, **env}, secrets


def _expand_tree(doc: YamlDoc, value: Any, path: KeyPath, env: Mapping[str, str], problems: list[Problem]) -> Any:
    if isinstance(value, dict):
        return {k: _expand_tree(doc, v, path + (k,), env, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_tree(doc, v, path + (i,), env, problems) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        missing: list[str] = []
        out = expand_vars(value, env, missing)
        for name in missing:
            problems.append(Problem(doc.file, ".".join(map(str, path)),
                                    f"environment variable {name} is not set and has no default: export {name}=... "
                                    f"or write ${{{name}:-default}}", doc.line(path)))
        return out
    return value


def _load_settings(doc: YamlDoc | None, root: Path, env: Mapping[str, str], problems: list[Problem]) -> Settings:
    if doc is None:
        return Settings(root=root)
    doc.data = _expand_tree(doc, doc.data, (), env, problems)
    c = Checker(doc)
    m = c.mapping(doc.data, (), SETTINGS_KEYS)
    base = Settings(root=root)
    env_url = env.get("RUNNER_STATE_URL")
    state_url = env_url or c.typed(m, "state_url", (), str, base.state_url)
    invalid = _invalid_url(state_url, "RUNNER_STATE_URL" if env_url else None)
    if invalid:
        c.add(("state_url",), invalid)
        state_url = base.state_url
    elif (missing := missing_driver(with_default_driver(state_url))) is not None:
        c.add(("state_url",), f"the state store cannot be opened: {missing}")
    for _, key in local_infile_keys(_url_query(state_url)):
        c.add(("state_url",), LOCAL_INFILE_REFUSED.format(key=key, where="the state store url's query")
              + (" (the url comes from RUNNER_STATE_URL)" if env_url else ""))
        state_url = base.state_url
    settings = Settings(
        root=root,
        timezone=c.timezone(m, (), base.timezone),
        state_url=resolve_url(state_url, root),
        retry=c.retry(m.get("retry"), ("retry",), base.retry),
        log_format=c.typed(m, "log_format", (), str, base.log_format, lambda v: v in ("text", "json"),
                           "text or json"),
        log_dir=c.typed(m, "log_dir", (), str, base.log_dir),
        misfire_grace=c.duration(m, "misfire_grace", (), base.misfire_grace) or 0.0,
        stop_grace=c.duration(m, "stop_grace", (), base.stop_grace) or 0.0,
        notify=notify_keys.notify_list(c, m["notify"], ("notify",))
        if m.get("notify") is not None and not any(p.key.startswith("notify") for p in problems) else (),
        ping_timeout=c.duration(m, "ping_timeout", (), base.ping_timeout, above_zero=True) or base.ping_timeout,
        history_days=c.typed(m, "history_days", (), int, base.history_days, lambda v: 1 <= v <= 36500,
                             "a whole number of days from 1 to 36500"),  # further back than a date reaches
        env_file=c.typed(m, "env_file", (), str, None),
        web=_web(c, m.get("web"), ("web",)) if "web" in m else None,
    )
    if m.get("metrics") is not None:
        listen, textfile = notify_keys.metrics(c, m["metrics"], ("metrics",), root)
        settings = Settings(**{**settings.__dict__, "metrics_listen": listen, "metrics_textfile": textfile})
    problems.extend(c.problems)
    return settings


def _web(c: Checker, value: Any, path: KeyPath) -> WebSpec:
    m = c.mapping(value, path, WEB_KEYS)
    base = WebSpec()
    host, port = base.host, base.port
    parsed = c.listen(m, path, base.port)
    if parsed is not None:
        host, port = parsed
    token = c.typed(m, "token", path, str, "")
    if token and len(token) < TOKEN_MIN:
        c.add(path + ("token",), f"the token is too short to be a secret ({len(token)} characters): use at least "
                                 f"{TOKEN_MIN}, e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))', "
                                 "or leave it empty for a read-only site")
        token = ""
    return WebSpec(host=host, port=port, token=token)


def _load_databases(conf_dir: Path, root: Path, env: Mapping[str, str], problems: list[Problem]) -> dict[str, Database]:
    path = conf_dir / "databases.yml"
    if not path.exists():
        problems.append(Problem(display(path, root), "", "file not found: create it with one entry per database, "
                                "e.g. warehouse: {url: 'sqlite:///var/warehouse.db'}"))
        return {}
    doc = _read_expanded(path, root, env, problems)
    if doc is None:
        return {}
    c = Checker(doc)
    out: dict[str, Database] = {}
    if not isinstance(doc.data, dict):
        c.add((), "must be a mapping of database names to {url: ...}")
        problems.extend(c.problems)
        return out
    for name, spec in doc.data.items():
        path_ = (name,)
        m = c.mapping(spec, path_, DB_KEYS)
        override = env.get(env_override_name(str(name)))
        url_key = f"{name}.url"
        if override:  # the url it replaces no longer matters, nor the ${VAR}s in it
            problems[:] = [p for p in problems if (p.file, p.key) != (doc.file, url_key)]
        url = override or c.typed(m, "url", path_, str, None)
        if not url:
            if not any((p.file, p.key) == (doc.file, url_key) for p in problems):  # else: unset ${VAR}, said
                c.add(path_ + ("url",), "missing url: give a SQLAlchemy URL such as mysql+pymysql://user:pw@host/db")
                continue
        elif invalid := _invalid_url(url, env_override_name(str(name)) if override else None):
            c.add(path_ + ("url",), invalid)
            continue
        pool = _pool(c, m.get("pool"), path_ + ("pool",))
        connect_args = c.typed(m, "connect_args", path_, dict, {})
        refused = False
        for _, key in local_infile_keys(_url_query(url)):
            c.add(path_ + ("url",), LOCAL_INFILE_REFUSED.format(key=key, where="the url's query") +
                  (f" (the url comes from {env_override_name(str(name))})" if override else ""))
            refused = True
        for key, label in local_infile_keys(connect_args):
            c.add(path_ + ("connect_args", key), LOCAL_INFILE_REFUSED.format(key=label, where="connect_args"))
            refused = True
        if refused:
            continue
        markers = c.typed(m, "markers", path_, bool, True)
        full_url = resolve_url(url, root)
        out[str(name)] = Database(name=str(name), url=full_url, pool=pool, connect_args=connect_args,
                                  markers=markers, driver_missing=missing_driver(full_url))
    problems.extend(c.problems)
    return out


# Settings that let a server read the client's files (LOAD DATA LOCAL INFILE), by driver: PyMySQL,
# mysqlclient, MariaDB Connector/Python, aiomysql, asyncmy (local_infile), MySQL Connector/Python
# (allow_local_infile, allow_local_infile_in_path), and the CLIENT_LOCAL_FILES bit of client_flag.
_LOCAL_INFILE_KEYS = {"local_infile", "allow_local_infile", "allow_local_infile_in_path"}
_CLIENT_LOCAL_FILES = 128
LOCAL_INFILE_REFUSED = ("{key} in {where} is refused: it lets the server (or whoever takes its place) read any file "
                        "this user can read, on every connection (LOAD DATA LOCAL INFILE); remove it. Loads between "
                        "MySQL/MariaDB databases need no setting: they use a connection of their own that sends "
                        "only the load's rows")


def local_infile_keys(options: Mapping[Any, Any]) -> list[tuple[str, str]]:
    """(key, what it is) of each driver option (a url's query or connect_args) that would let a server ask
    for files."""
    out = []
    for key, value in options.items():
        name = str(key).lower().replace("-", "_")
        value = value[-1] if isinstance(value, (list, tuple)) and value else value
        if name in _LOCAL_INFILE_KEYS and str(value).strip().lower() not in ("0", "false", "no", "off", "none", ""):
            out.append((str(key), str(key)))
        elif name == "client_flag":
            try:
                if int(value) & _CLIENT_LOCAL_FILES:
                    out.append((str(key), f"{key} with the CLIENT_LOCAL_FILES bit ({_CLIENT_LOCAL_FILES})"))
            except (TypeError, ValueError):
                continue
    return out


def _url_query(url: str) -> Mapping[str, Any]:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).query
    except Exception:
        return {}


def _invalid_url(url: str, variable: str | None) -> str | None:
    """What is wrong with a url SQLAlchemy cannot parse (its password hidden; `variable` names the
    environment variable it came from), or None when it parses."""
    from runner.config.urls import redact, unencoded_at

    source = f" (from {variable})" if variable else ""
    encode = "URL-encode @ : / % in a password (@ as %40, : as %3A, / as %2F, % as %25)"
    if unencoded_at(url):
        return (f"invalid url {redact(url)}{source}: its password holds an @, so the part after it would be "
                f"taken for the host: {encode}")
    if not _unparsable(url):
        return None
    shown = redact(url) if "@" in url else "(not shown: no user@host part to hide a password in)"
    return (f"invalid url {shown}{source}: write dialect+driver://user:password@host:port/database, "
            f"e.g. mysql+pymysql://etl:pw@db.example:3306/warehouse, and {encode}")


def _unparsable(url: str) -> bool:
    from sqlalchemy.engine import make_url

    try:
        make_url(url)
    except Exception:  # the parser's own message may quote the url, password included: say it ourselves
        return True
    return False


def _pool(c: Checker, value: Any, path: KeyPath) -> PoolSpec:
    m = c.mapping(value, path, POOL_KEYS)
    base = PoolSpec()
    positive = (lambda v: v >= 0)
    return PoolSpec(
        size=c.typed(m, "size", path, int, base.size, lambda v: v >= 1, "a whole number >= 1"),
        max_overflow=c.typed(m, "max_overflow", path, int, base.max_overflow, positive, "a whole number >= 0"),
        timeout=c.duration(m, "timeout", path, base.timeout) or 0.0,
        recycle=int(c.duration(m, "recycle", path, base.recycle) or 0),
        pre_ping=c.typed(m, "pre_ping", path, bool, base.pre_ping),
        ping_skip_ms=c.typed(m, "ping_skip_ms", path, int, base.ping_skip_ms, positive, "milliseconds >= 0"),
        leak_seconds=c.duration(m, "leak_seconds", path, base.leak_seconds),
    )

"""The `notify`, `ping`, `late_after` and `metrics` keys of conf/runner.yml and job files.

    notify:
      - url: "${ALERT_MAIL_URL}"                 # an Apprise URL: mailto://, json://, slack://, ...
        on: [failure, missed, late, recovery]    # default: every event but success
        name: oncall-mail                        # optional label (logs, metrics, --history)
        timeout: 10s                             # one delivery, connecting included
    metrics: {listen: "127.0.0.1:9464", textfile: var/metrics/runner.prom}

Only the shape is checked here; Apprise itself is not imported (it is imported when an alert is
sent, or by --check to say whether it understands each URL).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import parse_qsl, urlsplit

from runner.config.checks import Checker, expand_vars
from runner.config.yamlfile import KeyPath
from runner.model import DEFAULT_EVENTS, EVENTS, NotifyTarget

NOTIFY_KEYS = {"url", "on", "name", "timeout"}
METRICS_KEYS = {"listen", "textfile"}
TOKEN_MIN = 16  # path parts and query values of a notify URL this long are treated as tokens


def notify_list(c: Checker, value: Any, path: KeyPath,
                env: Mapping[str, str] | None = None) -> tuple[NotifyTarget, ...]:
    """The notify entries at `path`; ${VAR}s are expanded when `env` is given (job files are not
    expanded as a whole, conf/runner.yml is)."""
    if not isinstance(value, list):
        c.add(path, "must be a list of {url: APPRISE_URL, on: [failure, ...]} entries")
        return ()
    out = []
    for i, item in enumerate(value):
        where = path + (i,)
        if isinstance(item, str):
            item = {"url": item}
        if isinstance(item, dict) and True in item:  # YAML 1.1 reads a bare `on` key as true
            item = {("on" if k is True else k): v for k, v in item.items()}
        m = c.mapping(item, where, NOTIFY_KEYS)
        if not m:
            continue
        url = m.get("url")
        if isinstance(url, str) and env is not None and "${" in url:
            missing: list[str] = []
            url = expand_vars(url, env, missing)
            for name in missing:
                c.add(where + ("url",), f"environment variable {name} is not set and has no default: export "
                                        f"{name}=... or write ${{{name}:-default}}")
        if not isinstance(url, str) or "://" not in url:
            if not (isinstance(url, str) and "${" in str(m.get("url"))):
                c.add(where + ("url",), "needs url: an Apprise URL such as mailto://smtp.example.com:25?to=ops@"
                                        "example.com or json://hooks.example.com/runner")
            continue
        events = m.get("on", list(DEFAULT_EVENTS))
        if isinstance(events, str):
            events = [events]
        if not isinstance(events, list) or not events or any(e not in EVENTS for e in events):
            c.add(where + ("on",), f"invalid events {events!r}: a list of {', '.join(EVENTS)}")
            events = list(DEFAULT_EVENTS)
        name = c.typed(m, "name", where, str, "", lambda v: bool(v.strip()), "a short label")
        timeout = c.duration(m, "timeout", where, 10.0) or 0.0
        if timeout <= 0:
            c.add(where + ("timeout",), "must be more than 0 seconds")
            timeout = 10.0
        out.append(NotifyTarget(url=url, label=name or default_label(url), on=tuple(dict.fromkeys(events)),
                                timeout=timeout, key_path=".".join(map(str, where + ("url",))),
                                line=c.doc.line(where + ("url",))))
    return tuple(out)


def default_label(url: str) -> str:
    """`mailto#3fa2c1d0`: the scheme and a digest of the URL; a label must never carry a credential."""
    scheme = url.split("://", 1)[0].lower()
    return f"{scheme}#{hashlib.sha256(url.encode()).hexdigest()[:8]}"


def ping_url(c: Checker, value: Any, path: KeyPath, env: Mapping[str, str]) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and "${" in value:
        missing: list[str] = []
        value = expand_vars(value, env, missing)
        for name in missing:
            c.add(path, f"environment variable {name} is not set and has no default: export {name}=...")
        if missing:
            return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        c.add(path, "ping must be an http(s) URL, e.g. https://hc-ping.com/<uuid>; the runner calls <url>/start, "
                    "<url> and <url>/fail")
        return None
    return value.rstrip("/")


def metrics(c: Checker, value: Any, path: KeyPath, root: Path) -> tuple[tuple[str, int] | None, str | None]:
    """(listen address, textfile path) of `metrics`."""
    m = c.mapping(value, path, METRICS_KEYS)
    listen = c.listen(m, path, 9464)
    textfile = c.typed(m, "textfile", path, str, None)
    if textfile is not None:
        full = Path(textfile) if os.path.isabs(textfile) else (root / textfile).resolve()
        if not os.path.isabs(textfile) and not full.is_relative_to(root.resolve()):
            c.add(path + ("textfile",), f"{textfile} leads outside the project: give a path under it, or an "
                                        "absolute path such as /var/lib/node_exporter/textfile/runner.prom")
            textfile = None
        elif not full.name.endswith(".prom"):
            c.add(path + ("textfile",), "node_exporter reads only files ending in .prom")
            textfile = None
        else:
            textfile = str(full)
    return listen, textfile


def url_secrets(url: str) -> list[str]:
    """What of a notify or ping URL must never be shown: its password, and its long path parts and
    query values (webhook and service tokens)."""
    out: list[str] = []
    try:
        parts = urlsplit(url)
    except ValueError:
        return out
    if parts.password:
        out.append(parts.password)
    if parts.username and parts.password:
        out.append(f"{parts.username}:{parts.password}")
    host = parts.netloc.rpartition("@")[2]
    candidates = [host, *parts.path.split("/"), *(v for _, v in parse_qsl(parts.query))]
    out.extend(p for p in candidates if len(p) >= TOKEN_MIN and "." not in p)
    return out

"""The shape-and-type layer of configuration checks: one Checker per YAML document collects every
problem with its file, key and line; durations and ${VAR} expansion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo

from runner.config.yamlfile import KeyPath, YamlDoc
from runner.errors import Problem
from runner.model import RetrySpec

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)d)?\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?"
                       r"\s*(?:(\d+(?:\.\d+)?)s?)?\s*$")
RETRY_KEYS = {"attempts", "max_delay", "window", "base_delay"}
MAX_DURATION = 3650 * 86400.0  # ten years: longer is a typo, and timers and datetimes overflow past it


def parse_duration(value: Any) -> float | None:
    """Seconds from 90, "90s", "10m", "1h30m", "1d" (units d, h, m, s, largest first); None when the text
    is not a duration, or is negative, infinite or longer than MAX_DURATION."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if 0 <= value <= MAX_DURATION else None  # NaN and inf fail the comparison
    if not isinstance(value, str) or not value.strip():
        return None
    m = _DURATION.match(value)
    if not m or not any(m.groups()):
        return None
    d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    seconds = d * 86400 + h * 3600 + mi * 60 + s
    return seconds if seconds <= MAX_DURATION else None


def parse_listen(text: str) -> tuple[str, int] | None:
    """(host, port) from "HOST:PORT", "[IPv6]:PORT" or a bare "PORT" (loopback); None when it is neither."""
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or not 0 < int(port) <= 65535 or not re.match(r"^[A-Za-z0-9.:-]*$", host) or (
            ":" in host and not text.startswith("[")):
        return None
    return host or "127.0.0.1", int(port)


def expand_vars(text: str, env: Mapping[str, str], missing: list[str]) -> str:
    """Expand ${VAR} and ${VAR:-default} as the shell does: ${VAR} set to empty is empty, the default
    stands in for an unset or empty VAR; names of unset variables without default go to `missing`."""

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        value = env.get(name)
        if default is not None:
            return value or default
        if value is None:
            missing.append(name)
            return ""
        return value

    return _VAR.sub(sub, text)


@dataclass
class Checker:
    """Collects problems while reading one YAML document."""

    doc: YamlDoc
    problems: list[Problem] = field(default_factory=list)

    def add(self, path: KeyPath, message: str) -> None:
        key = ".".join(str(p) for p in path)
        self.problems.append(Problem(self.doc.file, key, message, self.doc.line(path)))

    def mapping(self, value: Any, path: KeyPath, allowed: set[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(path, f"must be a mapping of keys, got {type(value).__name__}")
            return {}
        for key in value:
            if key not in allowed:
                self.add(path + (key,), f"unknown key '{key}' (known keys: {', '.join(sorted(allowed))})")
        return value

    def typed(self, m: dict[str, Any], key: str, path: KeyPath, kind: type | tuple[type, ...], default: Any,
              check: Callable[[Any], bool] | None = None, hint: str = "") -> Any:
        if key not in m or m[key] is None:
            return default
        value = m[key]
        ok = isinstance(value, kind) and not (kind in (int, float, (int, float)) and isinstance(value, bool))
        if ok and check is not None:
            ok = check(value)
        if not ok:
            self.add(path + (key,), f"invalid value {value!r}" + (f": {hint}" if hint else ""))
            return default
        return value

    def duration(self, m: dict[str, Any], key: str, path: KeyPath, default: float | None,
                 above_zero: bool = False) -> float | None:
        """A duration in seconds; `above_zero` for a limit, where 0 would silently mean no limit at all."""
        if key not in m or m[key] is None:
            return default
        seconds = parse_duration(m[key])
        if seconds is None:
            self.add(path + (key,), f"invalid duration {m[key]!r}: write seconds or e.g. 90s, 10m, 1h30m, 1d "
                                    f"(units d, h, m, s), at most {MAX_DURATION / 86400:.0f}d")
            return default
        if above_zero and seconds <= 0:
            self.add(path + (key,), f"must be more than 0 seconds (leave {key} out for no {key})")
            return default
        return seconds

    def retry(self, value: Any, path: KeyPath, base: RetrySpec) -> RetrySpec:
        m = self.mapping(value, path, RETRY_KEYS)
        attempts = self.typed(m, "attempts", path, int, base.attempts, lambda v: v >= 1, "a whole number >= 1")
        return RetrySpec(attempts=attempts,
                         max_delay=self.duration(m, "max_delay", path, base.max_delay) or 0.0,
                         window=self.duration(m, "window", path, base.window),
                         base_delay=self.duration(m, "base_delay", path, base.base_delay) or 0.0)

    def listen(self, m: dict[str, Any], path: KeyPath, port: int) -> tuple[str, int] | None:
        """`listen` of web: and metrics: (one reading, one message); None when absent or invalid."""
        value = m.get("listen")
        if value is None:
            return None
        parsed = parse_listen(str(value)) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
        if parsed is None:
            self.add(path + ("listen",), f"invalid listen address {value!r}: write HOST:PORT such as 127.0.0.1:{port} "
                                         f"(loopback), [::1]:{port} for IPv6, or 0.0.0.0:{port} to listen on every "
                                         "address; the port from 1 to 65535")
        return parsed

    def timezone(self, m: dict[str, Any], path: KeyPath, default: str) -> str:
        tz = self.typed(m, "timezone", path, str, default)
        try:
            ZoneInfo(tz)
        except (ValueError, KeyError, OSError):
            self.add(path + ("timezone",), f"unknown timezone {tz!r}: use an IANA name such as Asia/Shanghai")
            return default
        return tz


def display(path: Path, root: Path) -> str:
    """The path as shown in messages: relative to the project root when it is inside it."""
    if path.is_absolute() and path.is_relative_to(root) and ".." not in path.parts:
        return str(path.relative_to(root))  # no symlink to resolve on the way: the common case, no stat
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)

"""Database urls fit to show: passwords hidden in messages and logs, and collected for the log redactor."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from runner.model import Project


# `scheme://user:` and everything up to the last @: a password written without URL-encoding may hold
# @ : / ? %, and whatever the parser makes of such a url, all of it is the password.
_CREDENTIALS = re.compile(r"^([A-Za-z][\w+.-]*://[^:/@?]*:)(.*)@", re.DOTALL)


def redact(url: str | sa.URL) -> str:
    """A URL fit for logs and messages: the password is replaced by ***, also in a url that does not parse
    or parses wrongly (a password holding @)."""
    if isinstance(url, sa.URL):
        return url.render_as_string(hide_password=True)
    if unencoded_at(url):
        return _mask(url)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return _mask(url)


def _mask(url: str) -> str:
    return _CREDENTIALS.sub(r"\1***@", url)


def raw_password(url: str) -> str | None:
    """What stands between `://user:` and the last @, as written."""
    m = _CREDENTIALS.match(url)
    return m.group(2) if m else None


def unencoded_at(url: str) -> bool:
    """The url holds an @ besides the one before the host, not URL-encoded: in a password it makes the url
    name the wrong host (and show part of the password as one)."""
    password = raw_password(url)
    return password is not None and "@" in password


def passwords(project: Project) -> list[str]:
    """The passwords in the project's database urls and state store url, and the web token (for masking
    in logs and pages)."""
    out = [project.settings.web.token] if project.settings.web is not None and project.settings.web.token else []
    for url in [*(db.url for db in project.databases.values()), project.settings.state_url]:
        found = [raw_password(url)]  # as written: the decoded one below may differ (%40 for @)
        try:
            found.append(make_url(url).password)
        except Exception:
            pass
        out.extend(str(pw) for pw in found if pw and str(pw) not in out)
    from runner.config.notify import url_secrets

    for target in project.settings.notify:
        out.extend(url_secrets(target.url))
    return out + list(project.secrets)

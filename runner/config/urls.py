"""Database urls fit to show: passwords hidden in messages and logs, and collected for the log redactor."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from runner.model import Project


def redact(url: str | sa.URL) -> str:
    """A URL fit for logs and messages: the password is replaced by ***."""
    try:
        return make_url(str(url) if not isinstance(url, sa.URL) else url).render_as_string(hide_password=True)
    except Exception:  # an unparsable url still must not leak: drop everything between : and @
        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", str(url))


def passwords(project: Project) -> list[str]:
    """The passwords in the project's database urls and state store url (for masking in logs)."""
    out = []
    for url in [*(db.url for db in project.databases.values()), project.settings.state_url]:
        try:
            pw = make_url(url).password
        except Exception:
            continue
        if pw:
            out.append(str(pw))
    from runner.config.notify import url_secrets

    for target in project.settings.notify:
        out.extend(url_secrets(target.url))
    return out + list(project.secrets)

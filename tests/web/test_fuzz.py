"""The API fuzzed from its own OpenAPI document with schemathesis, over real HTTP, on a ledger with
runs, failures, missed slots and watermarks: valid and invalid values of every parameter, and the
action without its token. No answer is a 5xx, and every answer (errors included) is one the document
describes: status, content type, headers and body schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from runner.state.ledger import Ledger
from runner.web.openapi import document
from tests.fixtures.core import run_main, write_project
from tests.webkit import TOKEN, Served, serving

JOBS = {
    "ok": "database: warehouse\ntasks:\n  - name: one\n    sql: SELECT 1\n",
    "bad": ('schedule: "*/5 * * * *"\ndatabase: warehouse\ntasks:\n  - name: boom\n'
            '    sql: SELECT * FROM "<script>x</script>"\n'),
    "broken": "tasks: [{name: x}]\n",
}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = write_project(tmp_path_factory.mktemp("fuzz"), JOBS)
    assert run_main(root, "--job", "ok")[0] == 0
    assert run_main(root, "--due", "--job", "bad")[0] == 1
    ledger = Ledger(f"sqlite:///{root / 'var' / 'runner-state.db'}")
    ledger.set_watermark("ok", "one", "2026-11-01")
    ledger.dispose()
    with serving(root, TOKEN) as site:
        yield site


@pytest.fixture(scope="module")
def api_schema(fuzzed: Served) -> Any:
    return schemathesis.openapi.from_url(f"{fuzzed.url}api/openapi.json")


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    s = requests.Session()
    s.trust_env = False  # straight to 127.0.0.1, whatever proxy the environment names
    yield s
    s.close()


def _can_be_wrong(op: dict[str, Any]) -> bool:
    """Whether a request can break the operation's document: a parameter limited by more than its type,
    or a body."""
    return "requestBody" in op or any(set(p["schema"]) - {"type"} for p in op.get("parameters", ()))


CASES = [(method.upper(), path, mode) for path, ops in document()["paths"].items() for method, op in ops.items()
         for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         if mode is GenerationMode.POSITIVE or _can_be_wrong(op)]


@pytest.mark.parametrize("method, path, mode", CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES])
def test_every_answer_is_one_the_openapi_document_describes(api_schema: Any, session: requests.Session, method: str,
                                                            path: str, mode: GenerationMode) -> None:
    operation = api_schema[path][method]
    answered: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def fuzz(case: Any) -> None:
        response = case.call_and_validate(session=session)  # every check schemathesis has
        answered.append(response.status_code)

    fuzz()
    assert answered and max(answered) < 500


def test_the_document_describes_every_api_route(fuzzed: Served) -> None:
    from runner.web.app import ROUTES

    doc = fuzzed.get("/api/openapi.json").json()
    described = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    routed = {(m, re.pattern.strip("^$").replace("([^/]+)", "{}")) for m, re, _ in ROUTES
              if re.pattern.startswith("^/api/") and "openapi" not in re.pattern}
    as_routed = {(m, "/" + "/".join("{}" if s.startswith("{") else s for s in p.strip("/").split("/")))
                 for m, p in described}
    assert as_routed == routed


def test_a_wrong_or_missing_token_is_always_401_whatever_the_job(fuzzed: Served) -> None:
    for job in ("ok", "nope", "broken", "a" * 300):
        assert fuzzed.post(f"/api/jobs/{job}/run").status == 401
        assert fuzzed.post(f"/api/jobs/{job}/run", token="x" * 30).status == 401

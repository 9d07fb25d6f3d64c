"""The OpenAPI 3.0 document of the API (served at /api/openapi.json): what every operation takes and
answers, errors included, so a client can be generated and the API fuzzed against it."""

from __future__ import annotations

from typing import Any

from runner import __version__
from runner.web.site import MAX_LIMIT
from runner.web.views import STATUSES


def _nullable(kind: str, **more: Any) -> dict[str, Any]:
    return {"type": kind, "nullable": True, **more}


_TIME = {"type": "string", "format": "date-time"}
_TIME_OR_NULL = _nullable("string", format="date-time")

_RUN = {
    "type": "object",
    "required": ["run_id", "job", "status", "trigger", "slot", "started", "ended", "run_date", "seconds", "attempts",
                 "rows", "host", "pid", "error", "statement", "page"],
    "properties": {
        "run_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "job": {"type": "string"},
        "status": {"type": "string", "description": "success, failed, interrupted, running, missed, abandoned, "
                                                    "paused"},
        "trigger": {"type": "string", "description": "daemon, cron, due, manual, rerun"},
        "slot": _TIME_OR_NULL,
        "started": _TIME,
        "ended": _TIME_OR_NULL,
        "run_date": {"type": "string"},
        "seconds": _nullable("number", minimum=0),
        "attempts": {"type": "integer", "minimum": 0},
        "rows": {"type": "integer", "minimum": 0},
        "host": {"type": "string"},
        "pid": {"type": "integer"},
        "error": _nullable("string", description="the whole failure message"),
        "statement": _nullable("string", description="file:line of the statement that failed"),
        "page": {"type": "string"},
    },
}

_ATTEMPT = {
    "type": "object",
    "required": ["task", "attempt", "status", "started", "ended", "seconds", "rows", "errno", "error", "statement"],
    "properties": {
        "task": {"type": "string"},
        "attempt": {"type": "integer", "minimum": 1},
        "status": {"type": "string", "description": "running, success, retrying, failed"},
        "started": _TIME,
        "ended": _TIME_OR_NULL,
        "seconds": _nullable("number", minimum=0),
        "rows": _nullable("integer"),
        "errno": _nullable("integer"),
        "error": _nullable("string"),
        "statement": _nullable("string", description="file:line of the statement a failed attempt failed in"),
    },
}

_NOTIFICATION = {
    "type": "object",
    "required": ["event", "target", "status", "created", "sent", "attempts", "error"],
    "properties": {
        "event": {"type": "string", "description": "failure, recovery, success, missed, abandoned, late"},
        "target": {"type": "string", "description": "the target's label (never its URL)"},
        "status": {"type": "string", "description": "pending, sent, expired, dropped"},
        "created": _TIME,
        "sent": _TIME_OR_NULL,
        "attempts": {"type": "integer", "minimum": 0},
        "error": _nullable("string", description="why the last delivery failed"),
    },
}

_SLOT = {
    "type": "object",
    "required": ["slot", "status", "run_id", "seconds", "runs"],
    "properties": {
        "slot": _TIME_OR_NULL,
        "status": {"type": "string", "description": "a run status, or norecord (no run recorded for a past slot) "
                                                    "or due (a slot of the last two minutes not run yet)"},
        "run_id": _nullable("string"),
        "seconds": _nullable("number", minimum=0),
        "runs": {"type": "integer", "minimum": 0},
    },
}

_PAUSE = {"type": "object", "nullable": True, "required": ["by", "at", "reason"],
          "properties": {"by": {"type": "string"}, "at": _TIME, "reason": {"type": "string"}}}

_JOB = {
    "type": "object",
    "required": ["job", "valid", "problems", "description", "schedule", "schedule_text", "timezone", "next_run",
                 "last_run", "enabled", "paused", "slots", "page"],
    "properties": {
        "job": {"type": "string"},
        "valid": {"type": "boolean", "description": "false when the job file does not load (see problems)"},
        "problems": {"type": "array", "items": {"type": "string"}},
        "description": {"type": "string"},
        "schedule": _nullable("string"),
        "schedule_text": _nullable("string"),
        "timezone": _nullable("string"),
        "next_run": _TIME_OR_NULL,
        "last_run": {"allOf": [{"$ref": "#/components/schemas/Run"}], "nullable": True},
        "enabled": {"type": "boolean", "nullable": True, "description": "false: enabled: false in the job file"},
        "paused": {"allOf": [{"$ref": "#/components/schemas/Pause"}], "nullable": True,
                   "description": "the pause in force (--pause, or from the web): who, when, why"},
        "slots": {"type": "array", "items": {"$ref": "#/components/schemas/Slot"},
                  "description": "the last 30 slots (runs, for a job without a schedule), oldest first"},
        "page": {"type": "string"},
    },
}

_JOB_DETAIL = {
    "allOf": [{"$ref": "#/components/schemas/Job"}, {
        "type": "object",
        "required": ["tasks", "params"],
        "properties": {
            "tasks": {"type": "array", "items": {
                "type": "object", "required": ["task", "kind", "database", "depends_on"],
                "properties": {"task": {"type": "string"}, "kind": {"type": "string"},
                               "database": {"type": "string"},
                               "depends_on": {"type": "array", "items": {"type": "string"}}}}},
            "params": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }],
}

_RUN_DETAIL = {
    "allOf": [{"$ref": "#/components/schemas/Run"}, {
        "type": "object",
        "required": ["tasks", "task_attempts", "slot_runs", "notifications"],
        "properties": {
            "tasks": {"type": "array", "items": {
                "type": "object", "required": ["task", "status", "attempts", "rows", "seconds", "errno", "error"],
                "properties": {"task": {"type": "string"}, "status": {"type": "string"},
                               "attempts": {"type": "integer", "minimum": 0}, "rows": _nullable("integer"),
                               "seconds": _nullable("number", minimum=0), "errno": _nullable("integer"),
                               "error": _nullable("string")}}},
            "task_attempts": {"type": "array", "items": {"$ref": "#/components/schemas/Attempt"}},
            "slot_runs": {"type": "array", "description": "every run of the same slot, oldest first", "items": {
                "type": "object", "required": ["run_id", "status", "trigger", "started"],
                "properties": {"run_id": {"type": "string"}, "status": {"type": "string"},
                               "trigger": {"type": "string"}, "started": _TIME}}},
            "notifications": {"type": "array", "description": "the alerts about the run, sent or still in the outbox",
                              "items": {"$ref": "#/components/schemas/Notification"}},
        },
    }],
}

_WATERMARK = {
    "type": "object",
    "description": "as --watermarks --format json lists it",
    "required": ["job", "task", "value", "type", "updated", "run_id", "changed_by", "action", "pending_run",
                 "pending_value", "column", "initial", "in_job_files"],
    "properties": {"job": {"type": "string"}, "task": {"type": "string"}, "value": _nullable("string"),
                   "type": _nullable("string", description="int, decimal, float, text, bytes"),
                   "updated": _nullable("string", description="when it last advanced, or was set by hand"),
                   "run_id": _nullable("string", description="the run that advanced it"),
                   "changed_by": _nullable("string", description="who set or reset it by hand"),
                   "action": _nullable("string", description="set or reset, by hand"),
                   "pending_run": _nullable("string", description="a run committing a new value"),
                   "pending_value": _nullable("string"), "column": _nullable("string"),
                   "initial": _nullable("string"),
                   "in_job_files": {"type": "boolean", "description": "false: the job or its task is gone"}},
}

_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
_STARTED = {
    "type": "object", "required": ["run_id", "job", "page", "api"],
    "properties": {"run_id": {"type": "string"}, "job": {"type": "string"}, "page": {"type": "string"},
                   "api": {"type": "string"}},
}
_RERUN_STARTED = {
    "type": "object", "required": ["run_id", "rerun_of", "page", "api"],
    "properties": {"run_id": {"type": "string"}, "rerun_of": {"type": "string"}, "page": {"type": "string"},
                   "api": {"type": "string"}},
}
_PAUSED = {
    "type": "object", "required": ["job", "paused", "changed"],
    "properties": {"job": {"type": "string"}, "paused": {"$ref": "#/components/schemas/Pause"},
                   "resumed": {"allOf": [{"$ref": "#/components/schemas/Pause"}], "nullable": True},
                   "changed": {"type": "boolean", "description": "false: it was paused (resumed) already"}},
}
_FORCE_BODY = {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "properties": {"force": {"type": "boolean", "default": False,
                                               "description": "run a paused job, or re-run again, all the same"}}}}}}



def _json(ref: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


def _error(description: str) -> dict[str, Any]:
    return _json("#/components/schemas/Error", description)


def _list(key: str, ref: str, description: str, **more: Any) -> dict[str, Any]:
    props = {key: {"type": "array", "items": {"$ref": ref}}, **more}
    return {"description": description, "content": {"application/json": {"schema": {
        "type": "object", "required": [key, *more], "properties": props}}}}


_JOB_PARAM = {"name": "job", "in": "path", "required": True, "description": "job name (its file is jobs/<job>.yml)",
              "schema": {"type": "string"}}
_RUN_PARAM = {"name": "run_id", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}
# A duration as conf/ writes them (units d, h, m, s, largest first), an ISO date, or an ISO date and time.
DURATION = "^([0-9]+(\\.[0-9]+)?d)?([0-9]+(\\.[0-9]+)?h)?([0-9]+(\\.[0-9]+)?m)?([0-9]+(\\.[0-9]+)?s?)?$"
_SINCE = {"anyOf": [{"type": "string", "minLength": 1, "pattern": DURATION},
                    {"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]}
_FILTERS = [
    {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(STATUSES)}},
    {"name": "since", "in": "query", "description": "a duration back from now (7d, 36h, 1h30m) or an ISO date or "
                                                    "date and time (UTC unless it says)", "schema": _SINCE},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100}},
]
_READ_ERRORS = {"400": _error("a query parameter is invalid"),
                "503": _error("the state store cannot be used now (out of reach or broken): what is wrong")}


def _action_errors() -> dict[str, Any]:
    return {"400": _error("the body is not a JSON object of the fields described"),
            "401": _error("no token, or a wrong one"), "403": _error("actions are off: no token is configured"),
            "413": _error("the body is too large")}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "runner", "version": __version__,
                 "description": "Jobs, runs and watermarks of the runner's state store; actions need "
                                "`Authorization: Bearer <token>` (web.token in conf/runner.yml)."},
        "paths": {
            "/api/jobs": {"get": {
                "operationId": "listJobs", "summary": "every job with its schedule, last run and last 30 slots",
                "responses": {"200": {"description": "the jobs", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["now", "jobs"],
                    "properties": {"now": _TIME,
                                   "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}}}}}},
                    **_READ_ERRORS}}},
            "/api/jobs/{job}": {"get": {
                "operationId": "getJob", "summary": "one job with its tasks and parameters",
                "parameters": [_JOB_PARAM],
                "responses": {"200": _json("#/components/schemas/JobDetail", "the job"),
                              "404": _error("no such job"), **_READ_ERRORS}}},
            "/api/jobs/{job}/runs": {"get": {
                "operationId": "listJobRuns", "summary": "the job's runs, newest first",
                "parameters": [_JOB_PARAM, *_FILTERS],
                "responses": {"200": _list("runs", "#/components/schemas/Run", "the runs",
                                           total={"type": "integer", "minimum": 0}, job={"type": "string"}),
                              "404": _error("no such job"), **_READ_ERRORS}}},
            "/api/jobs/{job}/watermarks": {"get": {
                "operationId": "listJobWatermarks", "summary": "the job's watermarks as the ledger has them",
                "parameters": [_JOB_PARAM],
                "responses": {"200": _list("watermarks", "#/components/schemas/Watermark", "the watermarks"),
                              "404": _error("no such job"), **_READ_ERRORS}}},
            "/api/jobs/{job}/run": {"post": {
                "operationId": "runJob", "summary": "run the job now (for today, in its timezone), as --job does",
                "security": [{"token": []}],
                "parameters": [_JOB_PARAM],
                "requestBody": _FORCE_BODY,
                "responses": {
                    "202": {"description": "started; the run is at Location",
                            "headers": {"Location": {"schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Started"}}}},
                    "400": _error("the body is not a JSON object"),
                    "401": _error("no token, or a wrong one"),
                    "403": _error("actions are off: no token is configured"),
                    "404": _error("no such job"),
                    "409": _error("the job is running already, is paused, or its file is invalid"),
                    "413": _error("the body is too large"),
                    "422": _error("a parameter the job needs has no value"),
                    "503": _error("the job's lock could not be taken now, or the state store cannot be used (what is wrong)")}}},
            "/api/jobs/{job}/pause": {"post": {
                "operationId": "pauseJob", "summary": "pause the job, as --pause does (its slots are recorded as "
                                                      "paused)",
                "security": [{"token": []}], "parameters": [_JOB_PARAM],
                "requestBody": {"required": False, "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"reason": {"type": "string", "maxLength": 500}}}}}},
                "responses": {"200": _json("#/components/schemas/Paused", "paused (or paused already)"),
                              **_action_errors(), "404": _error("no such job")}}},
            "/api/jobs/{job}/resume": {"post": {
                "operationId": "resumeJob", "summary": "resume the job, as --resume does",
                "security": [{"token": []}], "parameters": [_JOB_PARAM],
                "requestBody": {"required": False, "content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {"200": _json("#/components/schemas/Paused", "resumed (or not paused)"),
                              **_action_errors(), "404": _error("no such job")}}},
            "/api/runs/{run_id}/rerun": {"post": {
                "operationId": "rerunRun", "summary": "re-run a run that did not succeed, as --rerun does",
                "security": [{"token": []}], "parameters": [_RUN_PARAM], "requestBody": _FORCE_BODY,
                "responses": {
                    "202": {"description": "started; the new run is at Location",
                            "headers": {"Location": {"schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RerunStarted"}}}},
                    **_action_errors(), "404": _error("no such run"),
                    "409": _error("the run succeeded or was re-run already, its job is paused or running"),
                    "503": _error("the job's lock could not be taken now, or the state store cannot be used (what is wrong)")}}},
            "/api/runs": {"get": {
                "operationId": "listRuns", "summary": "runs of every job, newest first",
                "parameters": [{"name": "job", "in": "query", "schema": {"type": "string"}}, *_FILTERS],
                "responses": {"200": _list("runs", "#/components/schemas/Run", "the runs"),
                              "404": _error("no such job"), **_READ_ERRORS}}},
            "/api/runs/{run_id}": {"get": {
                "operationId": "getRun", "summary": "one run: its tasks, every attempt, the runs of its slot",
                "parameters": [_RUN_PARAM],
                "responses": {"200": _json("#/components/schemas/RunDetail", "the run"),
                              "404": _error("no such run"), **_READ_ERRORS}}},
            "/api/watermarks": {"get": {
                "operationId": "listWatermarks", "summary": "every watermark as the ledger has it",
                "parameters": [{"name": "job", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": _list("watermarks", "#/components/schemas/Watermark", "the watermarks"),
                              "404": _error("no such job"), **_READ_ERRORS}}},
        },
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer",
                                          "description": "web.token of conf/runner.yml"}},
            "schemas": {"Run": _RUN, "Attempt": _ATTEMPT, "Slot": _SLOT, "Job": _JOB, "JobDetail": _JOB_DETAIL,
                        "RunDetail": _RUN_DETAIL, "Notification": _NOTIFICATION, "Watermark": _WATERMARK,
                        "Error": _ERROR, "Started": _STARTED, "RerunStarted": _RERUN_STARTED, "Pause": _PAUSE,
                        "Paused": _PAUSED},
        },
    }

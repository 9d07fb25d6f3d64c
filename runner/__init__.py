"""runner: scheduled SQL/ETL jobs for MySQL/MariaDB (and any SQLAlchemy database).

Jobs are YAML files of SQL tasks that run through one self-healing connection pool per database,
with retries that know which MySQL errors are safe to retry, and a ledger of every run.

Layers, each importing only those below it (checked by import-linter, see pyproject.toml):

    cli        the command line
    schedule   slots, --due, the daemon, cron lines
    run        the executor and its retry policy
    move       export and load tasks
    tasks      the task-kind interface and the SQL task
    state      ledger, slots, locks, markers
    db         engines, error classification, server-side timeouts
    config     conf/ and jobs/ files, SQL text, parameters
    ground     model, errors, clock, logs, cron (this folder's modules)
"""

__version__ = "0.1.0"

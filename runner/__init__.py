"""runner: scheduled SQL/ETL jobs for MySQL/MariaDB (and any SQLAlchemy database).

Jobs are YAML files of SQL tasks that run through one self-healing connection pool per database,
with retries that know which MySQL errors are safe to retry, and a ledger of every run.
"""

__version__ = "0.1.0"

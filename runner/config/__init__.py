"""Configuration: conf/runner.yml and conf/databases.yml (project.py), jobs/NAME.yml (jobs.py), read
as YAML (yamlfile.py), checked in two layers with every problem reported at once (checks.py); the
SQL text of tasks (sqltext.py: splitting, placeholders, implicit commits; statements.py: binding),
task order and parameter values (plan.py), and urls fit to show (urls.py).

Touches no database. May import only the ground floor (runner.model, runner.errors, runner.clock,
runner.logs, runner.cron).
"""

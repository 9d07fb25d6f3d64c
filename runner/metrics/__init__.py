"""Prometheus metrics of the runs, built with prometheus-client: the pinned series (runs, last
success, durations, task attempts, retries by error number, rows, missed slots, notifications, pool
connections and checkout waits) in one registry per process (registry.py), served on /metrics by the
daemon or written to a node_exporter textfile at the end of every run, merged with what earlier
processes wrote (textfile.py).

prometheus_client is imported only when `metrics` is configured. May import runner.run and every
layer below it.
"""

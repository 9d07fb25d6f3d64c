"""Integration-test harness: a private MariaDB server, a fault-injecting TCP proxy
and pytest fixtures."""

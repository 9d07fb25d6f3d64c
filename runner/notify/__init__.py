"""Telling people: which events a run, a missed slot, an abandoned run or a late slot raise
(events.py, pure), the text of an alert (messages.py), delivery of the outbox through Apprise with a
bounded timeout (courier.py), dead-man pings (pings.py), and the hub that gives a process's runs
their watchers and sends what is pending before the process exits (hub.py).

Apprise is imported only when an alert is sent. May import runner.metrics, runner.run and every
layer below them.
"""

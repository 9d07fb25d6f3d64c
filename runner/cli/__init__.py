"""The command line: `python -m runner` parses arguments (main.py) and makes one library call per
action (commands.py), turning the library's named errors into messages and exit codes.

The top floor: may import every other package; nothing imports it.
"""

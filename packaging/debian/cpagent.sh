#!/bin/sh
# cpagent: runs the agent from its private virtual environment. exec, not a child: the
# agent keeps this PID (systemd's main PID, which sends READY/WATCHDOG notifications).
# -s: no user site-packages; -P: no current directory on sys.path (Python 3.11).
exec /usr/lib/cpagent/venv/bin/python3 -s -P -m cpagent "$@"

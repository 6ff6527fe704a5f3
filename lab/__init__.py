"""proxytier lab: a real 3-node proxy tier on one Linux machine (run as root).

`python -m lab up|down|demo|status|load` — see README.md.
"""

"""The command line's helper sub-commands and what every command shares; ``cli.py`` assembles them.

    common.py      the console (rank 0 prints), ``user_errors`` (one line, exit 2), the shared options
    data.py        ``xbench data``: info, preview, download
    inventory.py   ``xbench ls``, ``xbench weights``, ``xbench judges``: what xbench has, and its weights

The commands of a run (run, ablate, table, check, generate, figure, bench) stay in ``cli.py``, so that one run
reads from the command line to the leaderboard in one file.
"""

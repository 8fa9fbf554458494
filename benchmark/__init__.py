"""xbench's own layers, lowest first; every import points down (tests/test_layers_imports.py keeps it so).

    benchmark/core/      plain utilities: errors, atomic io, seeds, checkpoints, distributed, resize, cache, sheets
    benchmark/data/      reports, text, images, datasets, the phantom renderer
    methods/ | metrics/  the judged and the judges, side by side: neither imports the other
    benchmark/pipeline/  configuration, one run, results, leaderboards, check, bench
    benchmark/commands/  the helper sub-commands (data, ls, weights, judges) and what commands share
    cli.py               the commands of a run: parses, calls one pipeline function, prints

This file imports nothing.
"""

"""xbench's pipeline: data, text, configuration, runs, results and leaderboards."""

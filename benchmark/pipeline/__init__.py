"""The runner layer: a run's configuration (config), one run from data to result.json (runner), results,
leaderboards, regression checks (check), speed (bench), figures and sampling from a checkpoint (generate)."""

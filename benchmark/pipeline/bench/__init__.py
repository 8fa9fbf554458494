"""Speed: training throughput per method and stage, evaluation time, and the speed leaderboard."""

"""The worker: one APScheduler job per host, never overlapping itself."""

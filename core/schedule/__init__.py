"""The scheduler: cron schedules per source and task, turned into engine jobs (see runner.py)."""

"""The daemon: the job engine and the scheduler together behind a Unix socket, and what it
does at start for the jobs a dead daemon left (recovery). The top of core: it composes the
engine (core.jobs) with the scheduler (core.schedule), which sits above the engine."""

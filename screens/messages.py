"""Small typed messages between workers, the App and the screens.

Workers call the engine or a core service and post one of these; handlers only render.
Progress messages coalesce (``can_replace``): when a fast job reports faster than a slow
SSH link can draw, only the newest pending progress of that job is handled.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from core.jobs.api import Job


@dataclass
class JobChanged(Message, bubble=False):
    """A job was submitted, started or finished (never coalesced: each is a state change)."""

    job: Job


@dataclass
class JobProgressed(Message, bubble=False):
    """New progress of a running job; a newer one of the same job supersedes it."""

    job: Job

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, JobProgressed) and message.job.id == self.job.id


@dataclass
class JobLogLine(Message, bubble=False):
    job_id: str
    line: str


@dataclass
class EngineReady(Message, bubble=False):
    """The engine handle is connected: ``mode`` is "embedded" or "daemon"."""

    mode: str


@dataclass
class EngineFailed(Message, bubble=False):
    error: str


@dataclass
class DataLoaded(Message, bubble=False):
    """A screen's worker finished loading ``what``; ``data`` is plain values only."""

    what: str
    data: object


@dataclass
class LoadFailed(Message, bubble=False):
    what: str
    error: str


__all__ = ["DataLoaded", "EngineFailed", "EngineReady", "JobChanged", "JobLogLine", "JobProgressed", "LoadFailed"]

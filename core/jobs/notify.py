"""Notifications about finished jobs: a webhook (JSON POST) and a command hook.

Events: ``job.completed`` (with ``on_success``), ``job.failed`` and ``job.interrupted``
(with ``on_failure``; the latter sent by the next daemon start, saying what it did:
core/daemon/recovery.py), ``source.stale``, ``source.suspicious_shrink`` and
``source.tripwire`` (a backup that looks like mass encryption or a wipe, sent as its job
ends whatever ``on_success`` says: core/health/tripwire.py).

The payload holds the job record, which never holds secrets (params are refused at
submit time when they would). A failing notification is logged, never fatal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

from core.config import NotificationsConfig
from core.health.tripwire import recorded_trips
from core.jobs.api import Job, JobState
from core.jobs.codec import job_to_dict
from core.childenv import child_env
from core.scrub import scrub_value

log = logging.getLogger("axisor.notify")


def wanted(config: NotificationsConfig, job: Job) -> bool:
    if config.webhook_url is None and not config.command:
        return False
    if job.state in (JobState.FAILED, JobState.INTERRUPTED):  # interrupted: the daemon died under it
        return config.on_failure
    if job.state == JobState.COMPLETED:
        return config.on_success
    return False


def payload(job: Job) -> dict[str, Any]:
    # Scrubbed again on the way out: a webhook receiver is outside our trust.
    return scrub_value(
        {
            "event": f"job.{job.state.value}",
            "host": socket.gethostname(),
            "job": job_to_dict(job),
            "summary": _summary(job),
        }
    )


def _summary(job: Job) -> str:
    if job.state in (JobState.FAILED, JobState.INTERRUPTED):
        return f"axisor-backup {job.kind} job {job.id} {job.state.value}: {job.error}"
    return f"axisor-backup {job.kind} job {job.id} {job.state.value}"


async def notify(config: NotificationsConfig, job: Job) -> None:
    body = payload(job)
    tasks = []
    if config.webhook_url:
        tasks.append(_webhook(config.webhook_url, body, config.timeout_seconds))
    if config.command:
        tasks.append(_command(config.command, job, body, config.timeout_seconds))
    await asyncio.gather(*tasks)


async def notify_stale(
    config: NotificationsConfig,
    source: str,
    level: str,
    message: str,
    event: str = "source.stale",
    subject: str = "source",
) -> None:
    """A source's newest successful backup is older than its RPO (``[objectives]``), or
    (``event="source.suspicious_shrink"``) its newest snapshot lost too many files, or
    (``event="rto.forecast_over_objective"``, ``source`` "<scenario> from <location>") an
    RTO forecast is over its objective."""
    body = {
        "event": event,
        "host": socket.gethostname(),
        "source": source,
        "level": level,
        "summary": f"axisor-backup {subject} {source}: {message}",
    }
    tasks = []
    if config.webhook_url:
        tasks.append(_webhook(config.webhook_url, body, config.timeout_seconds))
    if config.command:
        tasks.append(
            _run_hook(
                config.command,
                body,
                {"AXISOR_EVENT": event, "AXISOR_SOURCE": source, "AXISOR_LEVEL": level},
                config.timeout_seconds,
            )
        )
    await asyncio.gather(*tasks)


def tripped(job: Job) -> list[tuple[str, str]]:
    """(source, message) per snapshot of a backup job that tripped the wire."""
    if job.kind != "backup":
        return []
    out = []
    for trip in recorded_trips(job.result):
        said = "; ".join(f.message for f in trip.findings)
        keep = f"; snapshot {trip.pinned[:8]} is pinned against prune" if trip.pinned else ""
        out.append((trip.source, f"TRIPWIRE in snapshot {trip.snapshot[:8]}: {said}{keep}"))
    return out


async def notify_tripwire(config: NotificationsConfig, job: Job) -> None:
    for source, message in tripped(job):
        log.warning("tripwire", extra={"source": source, "detail": message})
        await notify_stale(config, source, "critical", message, event="source.tripwire")


async def _webhook(url: str, body: dict[str, Any], timeout: float) -> None:
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.post(url, json=body, headers={"User-Agent": "axisor-backup"}) as response:
                if response.status >= 300:
                    log.warning(
                        "webhook refused the notification", extra={"event": body["event"], "status": response.status}
                    )
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        # The URL may carry a token in its query: name the host only.
        from urllib.parse import urlsplit

        log.warning(
            "webhook notification failed",
            extra={"event": body["event"], "host": urlsplit(url).hostname, "error": str(exc)},
        )


async def _command(argv: tuple[str, ...], job: Job, body: dict[str, Any], timeout: float) -> None:
    await _run_hook(
        argv,
        body,
        {
            "AXISOR_EVENT": body["event"],
            "AXISOR_JOB_ID": job.id,
            "AXISOR_JOB_KIND": job.kind,
            "AXISOR_JOB_STATE": job.state.value,
        },
        timeout,
    )


async def _run_hook(argv: tuple[str, ...], body: dict[str, Any], extra_env: dict[str, str], timeout: float) -> None:
    env = child_env(extra_env)  # never the passphrase, PGPASSWORD or cloud keys
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
    except OSError as exc:
        log.warning(
            "notification command could not start",
            extra={"event": body["event"], "command": argv[0], "error": exc.strerror or str(exc)},
        )
        return
    try:
        _, err = await asyncio.wait_for(proc.communicate(json.dumps(body).encode()), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        log.warning("notification command timed out", extra={"event": body["event"], "command": argv[0]})
        return
    if proc.returncode:
        log.warning(
            "notification command failed",
            extra={
                "event": body["event"],
                "command": argv[0],
                "exit": proc.returncode,
                "stderr": err.decode(errors="replace")[-500:],
            },
        )


__all__ = ["notify", "notify_stale", "notify_tripwire", "payload", "tripped", "wanted"]

"""The configuration's shape: frozen dataclasses and their defaults, the names of the
sources, and the error types a bad file raises (core/config/validate.py fills them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

ENV_CONFIG = "AXISOR_BACKUP_CONFIG"
ENV_PASSPHRASE = "AXISOR_BACKUP_PASSPHRASE"
PROVIDERS = ("aws-s3", "gcp-storage", "azure-blob", "ftp", "sftp", "local")

# Order matters: it is the order sources() reports, and so the order a backup set is taken.
APPLICATION_SOURCES = ("user_data", "automation_configs", "simulation_data", "log_files")
CONFIGURATION_SOURCES = ("environment_vars", "ssl_certificates", "api_keys", "system_settings")


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


class ConfigError(Exception):
    """One or more problems in a configuration; ``str()`` lists them one per line."""

    def __init__(self, problems: Any, path: str | Path | None = None) -> None:
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        self.path: Path | None = Path(path) if path is not None else None
        super().__init__(str(self))

    def __str__(self) -> str:
        prefix = f"{self.path}: " if self.path is not None else ""
        return "\n".join(f"{prefix}{problem}" for problem in self.problems)


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True, slots=True)
class SourceSpec:
    name: str
    category: str
    paths: tuple[Path, ...]
    exclude: tuple[str, ...]
    retention_days: int
    # A configured path that is a symbolic link: archive its target (True) or the link only.
    follow_root_symlink: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplicationConfig:
    user_data: tuple[Path, ...] = ()
    automation_configs: tuple[Path, ...] = ()
    simulation_data: tuple[Path, ...] = ()
    log_files: tuple[Path, ...] = ()
    retention_days: int = 30
    exclude: tuple[str, ...] = ()
    follow_root_symlink: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigurationConfig:
    environment_vars: tuple[Path, ...] = ()
    ssl_certificates: tuple[Path, ...] = ()
    api_keys: tuple[Path, ...] = ()
    system_settings: tuple[Path, ...] = ()
    retention_days: int = 90
    exclude: tuple[str, ...] = ()
    follow_root_symlink: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseConfig:
    enabled: bool = False
    url: str | None = None
    host: str | None = None
    port: int | None = None
    dbname: str | None = None
    user: str | None = None
    password_file: Path | None = None
    passfile: Path | None = None
    mode: str = "logical"
    frequency: str = "daily"
    retention_days: int = 30
    # Point-in-time recovery must reach back this far: prune keeps the base backup (and the
    # WAL after it) that recovery to the window's start begins from. 0: no such guard.
    pitr_window_days: int = 7
    # Physical mode: how long `database check` and the check before each base backup wait
    # for a forced WAL segment to arrive in the repository, and how long a base backup
    # waits for its own last segment, before failing with the archiver's last error.
    archive_timeout_seconds: int = 60
    row_checksums: bool = True  # logical backups: a checksum of every table's rows, beside exact counts
    # Logical backups store pg_dumpall --globals-only beside the dump; role passwords (hashes)
    # only when asked (then pg_dumpall must run as a superuser).
    globals_with_passwords: bool = False
    compression: bool = True
    encryption: bool = True
    incremental: bool = False
    pg_bin_dir: Path | None = None
    application_version: str | None = None
    # Physical backups from a standby: files read from the standby (the configured server,
    # its data directory on this host), pg_backup_start/stop run on the primary.
    backup_standby: bool = False
    primary_host: str | None = None  # the primary's host and port; the rest as configured above
    primary_port: int | None = None
    standby_timeout_seconds: int = 60  # how long the standby may take to replay past the backup's start


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteStorageConfig:
    provider: str
    name: str
    bucket_name: str | None = None
    endpoint: str | None = None
    region: str | None = None
    path_prefix: str = ""
    credentials_file: Path | None = None
    ca_bundle: Path | None = None
    known_hosts: Path | None = None
    host_key_fingerprint: str | None = None
    username: str | None = None
    key_file: Path | None = None
    # provider "local": a second directory, e.g. a NAS mount, holding its own repository.
    path: Path | None = None
    # Requests in flight at once (packs upload concurrently up to this many).
    concurrency: int = 4
    # One request (connect, one part, one read) may take this long before it is retried.
    timeout_seconds: int = 60
    # Attempts after the first for a failure that may pass (reset, throttling, 5xx, timeout).
    retries: int = 5
    # http:// endpoints and FTP without TLS send data and credentials in the clear: refused
    # unless the operator says so here (a lab's local S3 emulator, say).
    allow_insecure: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageConfig:
    local_path: Path
    compression_level: int = 3
    compression: bool = True
    encryption: bool = True
    passphrase_file: Path | None = None
    passphrase_command: tuple[str, ...] | None = None
    pack_size_mib: int = 16
    remote_storage: tuple[RemoteStorageConfig, ...] = ()


SCHEDULE_TASKS = ("backup", "verify", "copy", "prune", "drill")
BACKUP_TYPE_POLICIES = ("auto", "full", "incremental", "differential")


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleJobConfig:
    """One ``[[schedule.jobs]]`` entry: a task run on its own cron (core/schedule)."""

    name: str
    task: str
    cron: str
    timezone: str | None = None  # None: [schedule] timezone
    sources: tuple[str, ...] = ()  # backup: empty = every configured source
    type: str = "auto"  # backup: auto | full | incremental | differential
    full: bool = False  # verify: read every pack
    locations: tuple[str, ...] = ()  # copy: remote_storage names; empty = all
    jitter_seconds: int = 0
    enabled: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleConfig:
    enabled: bool = False
    cron_expression: str = "0 2 * * *"
    timezone: str = "UTC"
    parallel_backups: bool = False
    max_concurrent: int = 2
    full_every_days: int = 7
    jobs: tuple[ScheduleJobConfig, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    state_dir: Path | None = None  # None: $AXISOR_BACKUP_STATE_DIR, else the platform's user state dir
    shutdown_grace_seconds: int = 300
    metrics_file: Path | None = None
    # A file source that reads no byte and finishes no file this long fails (0: never).
    stall_timeout_seconds: int = 600


@dataclass(frozen=True, slots=True, kw_only=True)
class NotificationsConfig:
    webhook_url: str | None = None
    command: tuple[str, ...] | None = None
    on_failure: bool = True
    on_success: bool = False
    timeout_seconds: int = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionOverride:
    """``[retention.<category>]``: any key set here replaces the ``[retention]`` one."""

    keep_last: int | None = None
    keep_hourly: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None
    keep_within: timedelta | None = None  # timedelta(0) switches an inherited one off
    min_keep: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionConfig:
    """Calendar policies for prune, on top of each category's retention_days
    (core/maintenance/retention.py): a snapshot stays when any rule keeps it."""

    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    keep_within: timedelta | None = None
    min_keep: int = 3  # never forget the newest N good snapshots of a source
    database: RetentionOverride = field(default_factory=RetentionOverride)
    application: RetentionOverride = field(default_factory=RetentionOverride)
    configuration: RetentionOverride = field(default_factory=RetentionOverride)


DRILL_SCENARIOS = ("database-loss", "platform-loss", "location-loss", "corrupted-table")


@dataclass(frozen=True, slots=True, kw_only=True)
class Objective:
    """Recovery objectives of one source: how much data may be lost (RPO), how long
    bringing it back may take (RTO)."""

    rpo: timedelta
    rto: timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectivesConfig:
    """``[objectives]``: defaults for every source, and ``[objectives.<source>]`` tables
    (a source name like ``"application/user_data"``, or a category) that override them."""

    # A day plus the two hours a nightly run may take: a daily backup meets it.
    rpo: timedelta = timedelta(hours=26)
    rto: timedelta = timedelta(hours=4)
    # Past this multiple of the RPO the status turns from warning to critical.
    critical_factor: float = 2.0
    # A file snapshot that lost more than this share of the previous snapshot's files is
    # flagged "suspicious shrink" (core/health/shrink.py); 1 switches the flag off.
    suspicious_shrink: float = 0.5
    sources: tuple[tuple[str, Objective], ...] = ()

    def for_source(self, source: str) -> Objective:
        """The source's own table, else its category's, else the defaults."""
        table = dict(self.sources)
        for key in (source, source.split("/", 1)[0]):
            if key in table:
                return table[key]
        return Objective(rpo=self.rpo, rto=self.rto)


@dataclass(frozen=True, slots=True, kw_only=True)
class DrillCheckConfig:
    """One ``[[drills.checks]]`` smoke check: ``sql`` whose first value must equal
    ``expect``, or ``path`` that must exist (relative to the restored ``source``)."""

    name: str
    sql: str | None = None
    expect: str | int | float | bool | None = None
    path: str | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DrillsConfig:
    scenario: str = "database-loss"
    # "cluster": a throwaway PostgreSQL cluster the drill starts; "database": a scratch
    # database on the configured server.
    scratch: str = "cluster"
    table: str | None = None  # corrupted-table: schema.name; None picks the largest
    work_dir: Path | None = None  # scratch folders go here (default: the system temp dir)
    os_user: str | None = None  # as root: who runs the throwaway cluster (default postgres)
    checks: tuple[DrillCheckConfig, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    application: ApplicationConfig = field(default_factory=ApplicationConfig)
    configuration: ConfigurationConfig = field(default_factory=ConfigurationConfig)
    storage: StorageConfig
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    objectives: ObjectivesConfig = field(default_factory=ObjectivesConfig)
    drills: DrillsConfig = field(default_factory=DrillsConfig)
    path: Path | None = None

    def sources(self) -> tuple[SourceSpec, ...]:
        """The enabled file sources, in the fixed order a backup set takes them."""
        found: list[SourceSpec] = []
        groups: tuple[tuple[str, Any, tuple[str, ...]], ...] = (
            ("application", self.application, APPLICATION_SOURCES),
            ("configuration", self.configuration, CONFIGURATION_SOURCES),
        )
        for category, section, names in groups:
            for name in names:
                paths = getattr(section, name)
                if paths:
                    found.append(
                        SourceSpec(
                            name=f"{category}/{name}",
                            category=category,
                            paths=paths,
                            exclude=section.exclude,
                            retention_days=section.retention_days,
                            follow_root_symlink=section.follow_root_symlink,
                        )
                    )
        return tuple(found)

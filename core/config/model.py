"""The configuration, declared once: frozen dataclasses whose fields are the config.toml
keys, their defaults, and (in ``Annotated``) the check each value passes and a line of
documentation. validate.py reads a document against this declaration, docs.py writes the
key table of docs/CONFIG.md from it, and tests/core/test_config.py holds
config.toml.example to it.

The dataclasses are plain (pydantic-core validates into them; constructing one in code runs
no check), so callers and tests build them freely.
"""

# No "from __future__ import annotations": schema.py reads these annotations at run time,
# and evaluating them from strings cost a compile() each on every start.
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar

from core.config.checks import (
    NO_DB_PASSWORD,
    NO_REMOTE_CREDENTIALS,
    Argv,
    Boolean,
    Choice,
    Cron,
    Deprecated,
    Doc,
    Duration,
    Endpoint,
    ExpectValue,
    Factor,
    Folder,
    Integer,
    KibPerSecond,
    ListOf,
    Matching,
    MustStayOn,
    NotAKey,
    ObjectiveDuration,
    PathValue,
    PgUrl,
    RelativePath,
    Share,
    String,
    Tables,
    Timezone,
    WebhookUrl,
)

ENV_CONFIG = "AXISOR_BACKUP_CONFIG"
ENV_PASSPHRASE = "AXISOR_BACKUP_PASSPHRASE"
PROVIDERS = ("aws-s3", "gcp-storage", "azure-blob", "ftp", "sftp", "ssh", "local")

# Order matters: it is the order sources() reports, and so the order a backup set is taken.
APPLICATION_SOURCES = ("user_data", "automation_configs", "simulation_data", "log_files")
CONFIGURATION_SOURCES = ("environment_vars", "ssl_certificates", "api_keys", "system_settings")

SCHEDULE_TASKS = ("backup", "verify", "copy", "prune", "drill", "restore-test", "probe")
BACKUP_TYPE_POLICIES = ("auto", "full", "incremental", "differential")
DRILL_SCENARIOS = ("database-loss", "platform-loss", "location-loss", "corrupted-table", "compromised-host")

# What an [objectives.<key>] table may name: a category or one of its sources.
OBJECTIVE_KEYS = (
    "database",
    "application",
    "configuration",
    *(f"application/{n}" for n in APPLICATION_SOURCES),
    *(f"configuration/{n}" for n in CONFIGURATION_SOURCES),
)

# --------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem (or warning) in a config, at its dotted key path ("" for the file)."""

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


# --------------------------------------------------------------------------- value types

PathKey = Annotated[Path, PathValue()]
Port = Annotated[int, Integer(1, 65535)]
Text = Annotated[str, String()]
Flag = Annotated[bool, Boolean()]
Sources = Annotated[
    tuple[PathKey, ...],
    ListOf("paths", '["/srv/axisor/data"]', false_disables=True),
    Doc("paths to back up, or false to leave this source out"),
]
Globs = Annotated[tuple[Text, ...], ListOf("glob patterns", '["*.tmp", "cache/"]')]
Keep = Annotated[int, Integer(0, 100000)]
# Bandwidth limits of a location (core/storage/throttle.py), as restic's --limit-upload/-download.
LimitUpload = Annotated[int, KibPerSecond()]
LimitDownload = Annotated[int, KibPerSecond()]


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One file source a backup takes: its paths and the category settings that apply."""

    name: str
    category: str
    paths: tuple[Path, ...]
    exclude: tuple[str, ...]
    retention_days: int
    # A configured path that is a symbolic link: archive its target (True) or the link only.
    follow_root_symlink: bool = True
    # Commands run around the source's scan (core/backup/hooks.py): quiesce, snapshot a volume.
    pre_command: str | None = None
    post_command: str | None = None
    hook_timeout: int = 300


@dataclass(frozen=True, slots=True, kw_only=True)
class HookConfig:
    """One ``[[application.hooks]]`` or ``[[configuration.hooks]]``: commands run just before
    and just after one source's scan (to quiesce the application, or to take and release a
    filesystem snapshot), so the files match the database's instant."""

    source: Annotated[
        str,
        Choice(*APPLICATION_SOURCES, *CONFIGURATION_SOURCES),
        Doc("the source of this category, e.g. user_data"),
    ]
    pre_command: Annotated[
        str | None, String(), Doc("run before the scan; a failure fails the source (the post_command still runs)")
    ] = None
    post_command: Annotated[
        str | None, String(), Doc("run after the scan, whatever its outcome; a failure is a warning")
    ] = None
    timeout_seconds: Annotated[int, Integer(1), Doc("each command is stopped after this many seconds")] = 300


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplicationConfig:
    """``[application]``: the platform's application data sources."""

    user_data: Sources = ()
    automation_configs: Sources = ()
    simulation_data: Sources = ()
    log_files: Sources = ()
    retention_days: Annotated[int, Integer(1), Doc("days snapshots are kept before pruning")] = 30
    exclude: Annotated[Globs, Doc("glob patterns left out of every source of the category")] = ()
    follow_root_symlink: Annotated[
        bool, Boolean(), Doc("a listed path that is a symbolic link: archive its target (true) or the link")
    ] = True
    hooks: Annotated[tuple[HookConfig, ...], Tables(), Doc("commands run around one source's scan")] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigurationConfig:
    """``[configuration]``: the platform's configuration sources (secrets among them)."""

    environment_vars: Sources = ()
    ssl_certificates: Sources = ()
    api_keys: Sources = ()
    system_settings: Sources = ()
    retention_days: Annotated[int, Integer(1), Doc("days snapshots are kept before pruning")] = 90
    exclude: Annotated[Globs, Doc("glob patterns left out of every source of the category")] = ()
    follow_root_symlink: Annotated[
        bool, Boolean(), Doc("a listed path that is a symbolic link: archive its target (true) or the link")
    ] = True
    hooks: Annotated[tuple[HookConfig, ...], Tables(), Doc("commands run around one source's scan")] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseConfig:
    """``[database]``: the PostgreSQL source."""

    # Keys people plausibly write that get a specific refusal instead of "unknown key".
    REFUSED: ClassVar[Mapping[str, str]] = {"password": NO_DB_PASSWORD}

    enabled: Annotated[bool, Boolean(), Doc("back up the PostgreSQL database")] = False
    url: Annotated[str | None, PgUrl(), Doc("libpq connection URL, without a password")] = None
    host: Annotated[str | None, String(), Doc("server host name or socket folder")] = None
    port: Annotated[int | None, Integer(1, 65535), Doc("server port")] = None
    dbname: Annotated[str | None, String(), Doc("database name")] = None
    user: Annotated[str | None, String(), Doc("role to connect as")] = None
    password_file: Annotated[Path | None, PathValue(), Doc("file holding only the password (chmod 600)")] = None
    passfile: Annotated[Path | None, PathValue(), Doc("a libpq .pgpass file instead of ~/.pgpass")] = None
    mode: Annotated[
        str,
        Choice("logical", "physical"),
        Doc("pg_dump (logical) or base backup + WAL archiving (physical, point-in-time recovery)"),
    ] = "logical"
    frequency: Annotated[
        str,
        Choice("hourly", "daily", "weekly"),
        Doc("how often the daemon backs the database up when no [[schedule.jobs]] names it"),
    ] = "daily"
    retention_days: Annotated[int, Integer(1), Doc("days database snapshots are kept before pruning")] = 30
    # Point-in-time recovery must reach back this far: prune keeps the base backup (and the
    # WAL after it) that recovery to the window's start begins from. 0: no such guard.
    pitr_window_days: Annotated[
        int, Integer(0, 3650), Doc("days point-in-time recovery reaches back (prune keeps what it needs); 0: off")
    ] = 7
    # Physical mode: how long `database check` and the check before each base backup wait
    # for a forced WAL segment to arrive in the repository, and how long a base backup
    # waits for its own last segment, before failing with the archiver's last error.
    archive_timeout_seconds: Annotated[
        int, Integer(1, 86400), Doc("physical: how long to wait for WAL archiving before failing")
    ] = 60
    # Logical backups: a checksum of every table's rows, beside exact counts.
    row_checksums: Annotated[bool, Boolean(), Doc("logical: a checksum of every table's rows, beside exact counts")] = (
        True
    )
    # Logical backups: the tables' data spread over this many pg_dumps on one exported
    # snapshot, each streamed into the repository (core/sources/postgres/dump_parts.py).
    dump_jobs: Annotated[
        int, Integer(1, 16), Doc("logical: pg_dumps run at once on one snapshot, the tables' data split by size")
    ] = 1
    # Logical backups store pg_dumpall --globals-only beside the dump; role passwords (hashes)
    # only when asked (then pg_dumpall must run as a superuser).
    globals_with_passwords: Annotated[
        bool, Boolean(), Doc("logical: keep role password hashes with the roles (needs a superuser)")
    ] = False
    # Read once and never used: kept (None unless set) only so old configs load, with a
    # warning (Config.warnings).
    compression: Annotated[
        bool | None, Boolean(), Deprecated("database backups are compressed like all data, as storage.compression says")
    ] = None
    encryption: Annotated[
        bool | None, Boolean(), Deprecated("database backups are always encrypted, like everything in the repository")
    ] = None
    incremental: Annotated[
        bool | None,
        Boolean(),
        Deprecated(
            "a database backup already stores only the data that changed since the last one "
            '(deduplication); for every change in between use mode = "physical" (WAL archiving)'
        ),
    ] = None
    pg_bin_dir: Annotated[Path | None, PathValue(), Doc("folder of pg_dump, pg_basebackup ... matching the server")] = (
        None
    )
    application_version: Annotated[str | None, String(), Doc("platform version recorded in each backup's metadata")] = (
        None
    )
    # Physical backups from a standby: files read from the standby (the configured server,
    # its data directory on this host), pg_backup_start/stop run on the primary.
    backup_standby: Annotated[
        bool, Boolean(), Doc("physical: back up from the configured standby (start/stop on the primary)")
    ] = False
    primary_host: Annotated[  # the primary's host and port; the rest as configured above
        str | None, String(), Doc("backup_standby: the primary's host")
    ] = None
    primary_port: Annotated[int | None, Integer(1, 65535), Doc("backup_standby: the primary's port")] = None
    standby_timeout_seconds: Annotated[
        int, Integer(1, 86400), Doc("backup_standby: how long the standby may take to replay past the start")
    ] = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteStorageConfig:
    """One ``[[storage.remote_storage]]`` location that receives a copy of every backup."""

    REFUSED: ClassVar[Mapping[str, str]] = {
        key: NO_REMOTE_CREDENTIALS
        for key in ("access_key", "secret_key", "password", "account_key", "connection_string", "sas_token")
    }

    provider: Annotated[str, Choice(*PROVIDERS), Doc("the kind of location")]
    name: Annotated[
        str,
        Matching(r"[A-Za-z0-9_-]+", "may only use letters, digits, '_' and '-'", "letters, digits, _ and -"),
        Doc('required, unique; "local" is the primary\'s name'),
    ]
    bucket_name: Annotated[
        str | None, String(), Doc("bucket (azure-blob: container); required for aws-s3, gcp-storage, azure-blob")
    ] = None
    endpoint: Annotated[str | None, Endpoint(), Doc("host[:port] or URL; required for ftp, sftp and ssh")] = None
    region: Annotated[str | None, String(), Doc("provider region")] = None
    path_prefix: Annotated[str, String(empty_ok=True), Doc("folder inside the bucket or server")] = ""
    credentials_file: Annotated[
        Path | None, PathValue(), Doc("file with the provider's credentials (else its standard environment)")
    ] = None
    ca_bundle: Annotated[Path | None, PathValue(), Doc("PEM file of CAs to trust for TLS")] = None
    known_hosts: Annotated[Path | None, PathValue(), Doc("sftp, ssh: OpenSSH known_hosts file")] = None
    host_key_fingerprint: Annotated[str | None, String(), Doc('sftp, ssh: expected server key, e.g. "SHA256:..."')] = (
        None
    )
    username: Annotated[str | None, String(), Doc("ftp, sftp, ssh: login name")] = None
    key_file: Annotated[Path | None, PathValue(), Doc("sftp, ssh: private key file")] = None
    # provider "local": a second directory, e.g. a NAS mount, holding its own repository.
    path: Annotated[Path | None, PathValue(), Doc("local: the folder holding the copy; required for local")] = None
    # Requests in flight at once (packs upload concurrently up to this many).
    concurrency: Annotated[int, Integer(1, 64), Doc("requests in flight at once")] = 4
    # One request (connect, one part, one read) may take this long before it is retried.
    timeout_seconds: Annotated[int, Integer(1, 3600), Doc("one request's time limit before it is retried")] = 60
    # Attempts after the first for a failure that may pass (reset, throttling, 5xx, timeout).
    retries: Annotated[int, Integer(0, 20), Doc("retries of a request that failed in passing")] = 5
    # http:// endpoints and FTP without TLS send data and credentials in the clear: refused
    # unless the operator says so here (a lab's local S3 emulator, say).
    allow_insecure: Annotated[
        bool, Boolean(), Doc("accept an http:// endpoint or FTP without TLS (warned on every command)")
    ] = False
    limit_upload: Annotated[LimitUpload, Doc("uploads to this location at most this fast; 0: unlimited")] = 0
    limit_download: Annotated[LimitDownload, Doc("downloads from this location at most this fast; 0: unlimited")] = 0
    # S3 Object Lock (aws-s3 only): every object but locks is written with a retention date,
    # so no credentials can delete it before then (core/storage/s3.py).
    object_lock: Annotated[
        str | None,
        Choice("governance", "compliance"),
        Doc("aws-s3: write every object under S3 Object Lock in this mode (the bucket is made with Object Lock on)"),
    ] = None
    object_lock_days: Annotated[
        int | None,
        Integer(1, 36500),
        Doc("with object_lock: days each object stays locked; unset: the longest retention_days of the categories"),
    ] = None


_NO_KEY_HERE = (
    "never put the {what} in config.toml; use storage.passphrase_file, "
    f"storage.passphrase_command or {ENV_PASSPHRASE}"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageConfig:
    """``[storage]``: the primary repository and how data is written to it."""

    REFUSED: ClassVar[Mapping[str, str]] = {
        "encryption_key": _NO_KEY_HERE.format(what="key"),
        "passphrase": _NO_KEY_HERE.format(what="passphrase"),
    }

    local_path: Annotated[Path, Folder(), Doc("folder of the primary repository")]
    compression_level: Annotated[int, Integer(1, 22), Doc("zstd level, 1 (fastest) to 22 (smallest)")] = 3
    compression: Annotated[bool, Boolean(), Doc("compress data before encrypting it")] = True
    encryption: Annotated[bool, MustStayOn(), Doc("repositories are always encrypted")] = True
    passphrase_file: Annotated[
        Path | None, PathValue(), Doc("file holding only the repository passphrase (chmod 600)")
    ] = None
    passphrase_command: Annotated[tuple[Text, ...] | None, Argv(), Doc("program printing the passphrase")] = None
    pack_size_mib: Annotated[int, Integer(4, 128), Doc("target pack size, fixed at init")] = 16
    limit_upload: Annotated[
        LimitUpload, Doc("writes to the primary at most this fast (as restic's --limit-upload); 0: unlimited")
    ] = 0
    limit_download: Annotated[
        LimitDownload, Doc("reads from the primary at most this fast (restore, copy, verify); 0: unlimited")
    ] = 0
    remote_storage: Annotated[
        tuple[RemoteStorageConfig, ...],
        Tables(unique_names=True),
        Doc("locations that receive a copy of every backup"),
    ] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleJobConfig:
    """One ``[[schedule.jobs]]`` entry: a task run on its own cron (core/schedule)."""

    # Keys that only mean something for one task (validate.py refuses them elsewhere).
    TASK_ONLY: ClassVar[Mapping[str, str]] = {
        "sources": "backup",
        "type": "backup",
        "full": "verify",
        "locations": "copy",
        "sample_files": "restore-test",
        "sample_percent": "restore-test",
    }

    name: Annotated[
        str,
        Matching(r"[A-Za-z0-9_.-]+", "may only use letters, digits, '_', '.' and '-'", "letters, digits, _ . and -"),
        Doc("required, unique; used by `schedules pause|resume|run NAME`"),
    ]
    task: Annotated[str, Choice(*SCHEDULE_TASKS), Doc("what the job runs")]
    cron: Annotated[str, Cron(), Doc("when, read in timezone")]
    timezone: Annotated[str | None, Timezone(), Doc("default: [schedule] timezone")] = None
    sources: Annotated[
        tuple[Text, ...],
        ListOf("source names", '["database"]'),
        Doc("backup: the sources to take; default: every configured source"),
    ] = ()
    type: Annotated[str, Choice(*BACKUP_TYPE_POLICIES), Doc("backup: the snapshot type policy")] = "auto"
    full: Annotated[bool, Boolean(), Doc("verify: also read every pack")] = False
    locations: Annotated[
        tuple[Text, ...],
        ListOf("remote_storage names", '["offsite"]'),
        Doc("copy: [[storage.remote_storage]] names; default: all"),
    ] = ()
    sample_files: Annotated[
        int, Integer(1, 10000), Doc("restore-test: how many files (or tables) of the drawn snapshot to restore")
    ] = 20
    sample_percent: Annotated[
        int | None, Integer(1, 100), Doc("restore-test: restore this percent of the items instead (at least one)")
    ] = None
    jitter_seconds: Annotated[int, Integer(0, 86400), Doc("start up to this many seconds late")] = 0
    enabled: Annotated[bool, Boolean(), Doc("false keeps the schedule without running it")] = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleConfig:
    """``[schedule]``: when the daemon runs what."""

    enabled: Annotated[bool, Boolean(), Doc("run the schedule when running as a daemon")] = False
    cron_expression: Annotated[str, Cron(), Doc("when backups run (the default backup schedule)")] = "0 2 * * *"
    timezone: Annotated[str, Timezone(), Doc("the time zone cron expressions are read in")] = "UTC"
    parallel_backups: Annotated[bool | None, Boolean(), Deprecated("how many jobs run at once is max_concurrent")] = (
        None
    )
    max_concurrent: Annotated[int, Integer(1, 16), Doc("most jobs the engine runs at once")] = 2
    full_every_days: Annotated[int, Integer(1), Doc("take a full backup at least this often")] = 7
    jobs: Annotated[
        tuple[ScheduleJobConfig, ...],
        Tables(unique_names=True),
        Doc("per-source and per-task schedules"),
    ] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """``[engine]``: the job engine and daemon."""

    state_dir: Annotated[  # None: $AXISOR_BACKUP_STATE_DIR, else the platform's user state dir
        Path | None, Folder(), Doc("job database and daemon socket; default: the user state folder")
    ] = None
    shutdown_grace_seconds: Annotated[int, Integer(0, 86400), Doc("on SIGTERM, how long running jobs may finish")] = 300
    metrics_file: Annotated[Path | None, PathValue(), Doc("Prometheus text-format metrics file")] = None
    # A file source that reads no byte and finishes no file this long fails (0: never).
    stall_timeout_seconds: Annotated[
        int, Integer(0, 86400), Doc("a backup that reads nothing this long fails; 0: never")
    ] = 600


@dataclass(frozen=True, slots=True, kw_only=True)
class NotificationsConfig:
    """``[notifications]``: who hears about finished jobs."""

    webhook_url: Annotated[str | None, WebhookUrl(), Doc("POST a JSON document about each job here")] = None
    command: Annotated[tuple[Text, ...] | None, Argv(), Doc("run this with the job as JSON on stdin")] = None
    on_failure: Annotated[bool, Boolean(), Doc("notify when a job fails")] = True
    on_success: Annotated[bool, Boolean(), Doc("notify when a job succeeds")] = False
    timeout_seconds: Annotated[int, Integer(1, 600), Doc("longest a webhook or command may take")] = 10


_INHERITED = Doc("the [retention] key for this category; unset: [retention]'s applies")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionOverride:
    """``[retention.<category>]``: any key set here replaces the ``[retention]`` one."""

    keep_last: Annotated[int | None, Integer(0, 100000), _INHERITED] = None
    keep_hourly: Annotated[int | None, Integer(0, 100000), _INHERITED] = None
    keep_daily: Annotated[int | None, Integer(0, 100000), _INHERITED] = None
    keep_weekly: Annotated[int | None, Integer(0, 100000), _INHERITED] = None
    keep_monthly: Annotated[int | None, Integer(0, 100000), _INHERITED] = None
    keep_yearly: Annotated[int | None, Integer(0, 100000), _INHERITED] = None
    keep_within: Annotated[  # timedelta(0) switches an inherited one off
        timedelta | None, Duration(), Doc('the [retention] key for this category; "0h" switches it off')
    ] = None
    min_keep: Annotated[int | None, Integer(1, 100000), _INHERITED] = None


_OVERRIDE = Doc("any [retention] key, for this category only")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionConfig:
    """Calendar policies for prune, on top of each category's retention_days
    (core/maintenance/retention.py): a snapshot stays when any rule keeps it."""

    keep_last: Annotated[Keep, Doc("the newest N snapshots")] = 0
    keep_hourly: Annotated[Keep, Doc("the newest of each of the last N hours that have one")] = 0
    keep_daily: Annotated[Keep, Doc("... of the last N days")] = 0
    keep_weekly: Annotated[Keep, Doc("... of the last N ISO weeks")] = 0
    keep_monthly: Annotated[Keep, Doc("... of the last N months")] = 0
    keep_yearly: Annotated[Keep, Doc("... of the last N years")] = 0
    keep_within: Annotated[timedelta | None, Duration(), Doc("every snapshot younger than this")] = None
    min_keep: Annotated[  # never forget the newest N good snapshots of a source
        int, Integer(1, 100000), Doc("never forget the newest N good snapshots of a source")
    ] = 3
    database: Annotated[RetentionOverride, _OVERRIDE] = field(default_factory=RetentionOverride)
    application: Annotated[RetentionOverride, _OVERRIDE] = field(default_factory=RetentionOverride)
    configuration: Annotated[RetentionOverride, _OVERRIDE] = field(default_factory=RetentionOverride)


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
    rpo: Annotated[timedelta, ObjectiveDuration(), Doc("how old the newest restorable point of a source may be")] = (
        timedelta(hours=26)
    )
    rto: Annotated[timedelta, ObjectiveDuration(), Doc("how long a drill may take")] = timedelta(hours=4)
    # Past this multiple of the RPO the status turns from warning to critical.
    critical_factor: Annotated[float, Factor(), Doc("past this multiple of the RPO the status turns critical")] = 2.0
    # A file snapshot that lost more than this share of the previous snapshot's files is
    # flagged "suspicious shrink" (core/health/shrink.py); 1 switches the flag off.
    suspicious_shrink: Annotated[
        float, Share(), Doc("flag a snapshot that lost more than this share of files; 1: off")
    ] = 0.5
    # [objectives.<source>] tables, read by validate.py (their names are open-ended).
    sources: Annotated[tuple[tuple[str, Objective], ...], NotAKey()] = ()

    def for_source(self, source: str) -> Objective:
        """The source's own table, else its category's, else the defaults."""
        table = dict(self.sources)
        for key in (source, source.split("/", 1)[0]):
            if key in table:
                return table[key]
        return Objective(rpo=self.rpo, rto=self.rto)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtectionConfig:
    """``[protection]``: the tripwire (core/health/tripwire.py). A backup that looks like
    ransomware at work (most files changed, new data suddenly incompressible, or a sudden
    shrink by ``[objectives] suspicious_shrink``) makes `status` critical, notifies, and pins
    the snapshot before it against prune until `axisor-backup acknowledge`."""

    tripwire: Annotated[bool, Boolean(), Doc("watch every file backup for the marks of mass encryption or a wipe")] = (
        True
    )
    # A nightly run changes a few percent of a platform's files; an encryption run, all.
    changed_share: Annotated[
        float, Share(), Doc("trip when more than this share of the previous snapshot's files changed or vanished")
    ] = 0.5
    # Below this many changed files the share means nothing (ten config files, one deploy).
    min_files: Annotated[int, Integer(1, 10**9), Doc("fewer changed or vanished files than this never trip")] = 50
    incompressible_mib: Annotated[
        int, Integer(1, 10**7), Doc("new data under this many MiB never trips the compressibility rule")
    ] = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class DrillCheckConfig:
    """One ``[[drills.checks]]`` smoke check: ``sql`` whose first value must equal
    ``expect``, ``path`` that must exist (relative to the restored ``source``), or the
    cross-check ``paths_sql``: a query whose rows name files (relative to the source, or
    absolute below one of its configured paths) that must all exist in the restored ``source``."""

    name: Annotated[str, String(), Doc("what the check is called in reports")]
    sql: Annotated[str | None, String(), Doc("a query run on the restored database")] = None
    expect: Annotated[
        str | int | float | bool | None, ExpectValue(), Doc("with sql: the first value it must return")
    ] = None
    path: Annotated[str | None, RelativePath(), Doc("a file that must exist in the restored source")] = None
    paths_sql: Annotated[
        str | None,
        String(),
        Doc("a query on the restored database whose first column lists files that must exist in the restored source"),
    ] = None
    source: Annotated[
        str | None, Choice("database", *OBJECTIVE_KEYS[3:]), Doc("with path or paths_sql: the source it is in")
    ] = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DrillsConfig:
    """``[drills]``: disaster-recovery drills."""

    scenario: Annotated[str, Choice(*DRILL_SCENARIOS), Doc("the scenario when --scenario is not given")] = (
        "database-loss"
    )
    # "cluster": a throwaway PostgreSQL cluster the drill starts; "database": a scratch
    # database on the configured server.
    scratch: Annotated[str, Choice("cluster", "database"), Doc("where a database is restored")] = "cluster"
    table: Annotated[  # corrupted-table: schema.name; None picks the largest
        str | None,
        Matching(r"[^.\s]+\.[^.\s]+", 'must be schema.table, e.g. "public.orders"', "schema.table"),
        Doc("corrupted-table: the table; default: the largest"),
    ] = None
    work_dir: Annotated[  # scratch folders go here (default: the system temp dir)
        Path | None, PathValue(), Doc("folder for scratch files; default: the system temp folder")
    ] = None
    os_user: Annotated[  # as root: who runs the throwaway cluster (default postgres)
        str | None, String(), Doc("as root: the OS user of a throwaway cluster; default: postgres")
    ] = None
    checks: Annotated[
        tuple[DrillCheckConfig, ...], Tables(), Doc("smoke checks run against what a drill restored")
    ] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole config.toml, validated (``path``: the file it was read from)."""

    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    application: ApplicationConfig = field(default_factory=ApplicationConfig)
    configuration: ConfigurationConfig = field(default_factory=ConfigurationConfig)
    storage: StorageConfig
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    objectives: ObjectivesConfig = field(default_factory=ObjectivesConfig)
    protection: ProtectionConfig = field(default_factory=ProtectionConfig)
    drills: DrillsConfig = field(default_factory=DrillsConfig)
    path: Annotated[Path | None, NotAKey()] = None

    def with_limits(self, upload: int | None, download: int | None) -> "Config":
        """This config with every location's limit_upload / limit_download (KiB/s) set to
        ``upload`` / ``download`` where given: --limit-upload and --limit-download override
        the file for one run."""
        if upload is None and download is None:
            return self

        def limited(loc: Any) -> Any:
            return replace(
                loc,
                limit_upload=loc.limit_upload if upload is None else upload,
                limit_download=loc.limit_download if download is None else download,
            )

        storage = replace(
            limited(self.storage), remote_storage=tuple(limited(loc) for loc in self.storage.remote_storage)
        )
        return replace(self, storage=storage)

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
                hook = next((h for h in section.hooks if h.source == name), None)
                if paths:
                    found.append(
                        SourceSpec(
                            name=f"{category}/{name}",
                            category=category,
                            paths=paths,
                            exclude=section.exclude,
                            retention_days=section.retention_days,
                            follow_root_symlink=section.follow_root_symlink,
                            pre_command=hook.pre_command if hook else None,
                            post_command=hook.post_command if hook else None,
                            hook_timeout=hook.timeout_seconds if hook else 300,
                        )
                    )
        return tuple(found)

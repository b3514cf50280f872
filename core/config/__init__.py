"""The configuration: config.toml -> frozen dataclasses, validated in one pass.

model.py declares every key once (type, default, check, a line of documentation; the
checks are in checks.py), validate.py reads a parsed document against it with pydantic,
load.py finds and reads the file, secrets.py resolves the repository passphrase, and
docs.py writes the key table of docs/CONFIG.md from the declaration.
Every name callers used from the former core/config.py is re-exported here.
"""

from core.config.load import config_digest, config_notes, default_config_path, insecure_notes, load_config
from core.config.model import (
    APPLICATION_SOURCES,
    BACKUP_TYPE_POLICIES,
    CONFIGURATION_SOURCES,
    DRILL_SCENARIOS,
    ENV_CONFIG,
    ENV_PASSPHRASE,
    PROVIDERS,
    SCHEDULE_TASKS,
    ApplicationConfig,
    Config,
    ConfigError,
    ConfigProblem,
    ConfigurationConfig,
    DatabaseConfig,
    DrillCheckConfig,
    DrillsConfig,
    EngineConfig,
    NotificationsConfig,
    Objective,
    ObjectivesConfig,
    ProtectionConfig,
    RemoteStorageConfig,
    RetentionConfig,
    RetentionOverride,
    ScheduleConfig,
    ScheduleJobConfig,
    SourceSpec,
    StorageConfig,
)
from core.config.secrets import PASSPHRASE_COMMAND_TIMEOUT, PassphraseError, resolve_passphrase
from core.config.validate import deprecations, insecure_endpoint, parse_config

__all__ = [
    "APPLICATION_SOURCES",
    "BACKUP_TYPE_POLICIES",
    "CONFIGURATION_SOURCES",
    "DRILL_SCENARIOS",
    "ENV_CONFIG",
    "ENV_PASSPHRASE",
    "PASSPHRASE_COMMAND_TIMEOUT",
    "PROVIDERS",
    "SCHEDULE_TASKS",
    "ApplicationConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "ConfigurationConfig",
    "DatabaseConfig",
    "DrillCheckConfig",
    "DrillsConfig",
    "EngineConfig",
    "NotificationsConfig",
    "Objective",
    "ObjectivesConfig",
    "ProtectionConfig",
    "PassphraseError",
    "RemoteStorageConfig",
    "RetentionConfig",
    "RetentionOverride",
    "ScheduleConfig",
    "ScheduleJobConfig",
    "SourceSpec",
    "StorageConfig",
    "config_digest",
    "config_notes",
    "default_config_path",
    "deprecations",
    "insecure_endpoint",
    "insecure_notes",
    "load_config",
    "parse_config",
    "resolve_passphrase",
]

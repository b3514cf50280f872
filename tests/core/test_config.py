import dataclasses
import json
import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import core.config.docs as config_docs
import core.config.secrets as config_secrets
from core.config import (
    APPLICATION_SOURCES,
    CONFIGURATION_SOURCES,
    Config,
    ConfigError,
    ConfigProblem,
    PassphraseError,
    RemoteStorageConfig,
    SourceSpec,
    StorageConfig,
    default_config_path,
    deprecations,
    load_config,
    parse_config,
    resolve_passphrase,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config.toml.example"


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(data: dict, tmp_path: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=tmp_path)
    return {p.key: p.message for p in info.value.problems}


def minimal(**sections) -> dict:
    data = {"storage": {"local_path": "/var/backups/axisor"}}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return data


# --------------------------------------------------------------------------- the example


def test_example_loads_and_lists_sources_in_order():
    config = load_config(EXAMPLE)
    assert config.path == EXAMPLE
    assert [s.name for s in config.sources()] == [
        "application/user_data",
        "application/automation_configs",
        "application/simulation_data",
        "application/log_files",
        "configuration/environment_vars",
        "configuration/ssl_certificates",
        "configuration/api_keys",
        "configuration/system_settings",
    ]
    first, last = config.sources()[0], config.sources()[-1]
    assert first == SourceSpec(
        name="application/user_data",
        category="application",
        paths=(Path("/srv/axisor/users"),),
        exclude=("*.tmp", "*.swp"),
        retention_days=30,
    )
    assert last.category == "configuration"
    assert last.paths == (Path("/etc/axisor/settings"),)
    assert last.retention_days == 90
    assert config.storage.local_path == Path("/var/backups/axisor")
    assert config.storage.encryption is True
    assert config.database.enabled is False


def example_sections() -> dict[str, str]:
    """The example's text under each top-level [section] header."""
    text = EXAMPLE.read_text(encoding="utf-8")
    parts = re.split(r"^\[([a-z_]+)\]\n", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


def test_example_documents_every_key():
    regions = example_sections()
    for section_name, key in config_docs.all_keys():
        # Optional keys without a default appear commented out; still documented.
        # An array of tables is documented by its [[header]] instead of "key =".
        pattern = rf"^(# )*({key.name} = |\[\[{section_name}\.{key.name}\]\])"
        found = re.search(pattern, regions[section_name.split(".")[0]], re.MULTILINE)
        if key.deprecated is None:
            assert found, f"{section_name}.{key.name} missing"
        else:  # a key that does nothing is not shown to new configs
            assert not found, f"{section_name}.{key.name} is deprecated and still in the example"


# Keys the example sets to something other than the default, to show what a value looks like.
EXAMPLE_VALUES = (
    {f"application.{name}" for name in APPLICATION_SOURCES}
    | {f"configuration.{name}" for name in CONFIGURATION_SOURCES}
    | {"application.exclude", "storage.local_path"}
)


def test_example_values_are_the_declared_defaults():
    """Every key the example writes out (not commented) shows model.py's default, so the
    example cannot drift from the declaration."""
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    checked = 0
    for where, _, cls in config_docs.sections():
        table = data
        for part in where.split("."):
            table = table.get(part, {}) if isinstance(table, dict) else {}
        for name, key in config_docs.keys(cls).items():
            if name not in table or key.table is not None or f"{where}.{name}" in EXAMPLE_VALUES:
                continue
            raw = table[name]
            shown = config_docs.toml_value(tuple(raw) if isinstance(raw, list) else raw)
            assert shown == config_docs.toml_value(key.default), f"{where}.{name}"
            checked += 1
    assert checked >= 40  # the test looked at something


def test_docs_key_table_is_generated_from_the_declaration():
    """docs/CONFIG.md is what scripts/config-docs writes from model.py (run it after a change)."""
    assert config_docs.DOC.read_text(encoding="utf-8") == config_docs.render()
    text = config_docs.render()
    for where, key in config_docs.all_keys():
        assert f"| `{key.name}` |" in text, f"{where}.{key.name}"


def test_example_remote_storage_blocks_are_valid(tmp_path):
    text = EXAMPLE.read_text(encoding="utf-8")
    blocks = re.findall(r"^# \[\[storage\.remote_storage\]\]\n(?:^# .*\n)+", text, re.MULTILINE)
    assert len(blocks) == 7
    uncommented = []
    for block in blocks:
        lines = [line[2:] for line in block.splitlines()]
        uncommented.append("\n".join(line for line in lines if not line.startswith("# ")))
    # Append after [schedule] would put them in the wrong table; the array of tables
    # header makes them land in storage wherever they appear.
    path = write(tmp_path, text + "\n" + "\n\n".join(uncommented) + "\n")
    config = load_config(path)
    providers = [r.provider for r in config.storage.remote_storage]
    assert providers == ["aws-s3", "gcp-storage", "azure-blob", "sftp", "ssh", "ftp", "local"]
    assert config.storage.remote_storage[0].credentials_file == Path("/etc/axisor/aws-credentials")
    assert (config.storage.remote_storage[0].object_lock, config.storage.remote_storage[0].object_lock_days) == (
        "governance",
        30,
    )


# --------------------------------------------------------------------------- parsing


def test_almost_empty_config_gets_defaults(tmp_path):
    config = load_config(write(tmp_path, '[storage]\nlocal_path = "/var/backups/axisor"\n'))
    assert config.sources() == ()
    assert config.storage.compression_level == 3
    assert config.storage.pack_size_mib == 16
    assert config.storage.remote_storage == ()
    assert config.schedule.cron_expression == "0 2 * * *"
    assert config.schedule.timezone == "UTC"
    assert config.schedule.max_concurrent == 2
    assert config.database.mode == "logical"
    assert config.application.retention_days == 30
    assert config.configuration.retention_days == 90


def test_relative_paths_resolve_against_config_dir(tmp_path, monkeypatch):
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    monkeypatch.chdir(tmp_path)  # somewhere else than the config's directory
    path = write(
        conf_dir,
        """
[application]
user_data = ["users", "/abs/users"]
[storage]
local_path = "repo"
passphrase_file = "secret/pass"
passphrase_command = ["./get-pass", "--quiet"]
[database]
password_file = "db.pw"
""",
    )
    config = load_config(path)
    assert config.storage.local_path == conf_dir / "repo"
    assert config.storage.passphrase_file == conf_dir / "secret" / "pass"
    assert config.storage.passphrase_command == (str(conf_dir / "get-pass"), "--quiet")
    assert config.application.user_data == (conf_dir / "users", Path("/abs/users"))
    assert config.database.password_file == conf_dir / "db.pw"


def test_parse_config_uses_given_base_dir(tmp_path):
    config = parse_config(minimal(storage={"local_path": "r"}), base_dir=tmp_path)
    assert config.storage.local_path == tmp_path / "r"
    assert config.path is None


def test_false_disables_a_category(tmp_path):
    data = minimal(
        application={"user_data": ["/u"], "log_files": False, "simulation_data": []},
        configuration={"api_keys": ["/k"], "ssl_certificates": False},
    )
    config = parse_config(data, base_dir=tmp_path)
    assert config.application.log_files == ()
    assert [s.name for s in config.sources()] == ["application/user_data", "configuration/api_keys"]


def test_true_is_not_a_path_list(tmp_path):
    problems = problems_of(minimal(application={"user_data": True}), tmp_path)
    assert list(problems) == ["application.user_data"]
    assert problems["application.user_data"].startswith("give a list of paths")
    assert "false" in problems["application.user_data"]


def test_every_problem_reported_at_once_with_key_paths(tmp_path):
    path = write(
        tmp_path,
        """
[storage]
compression_level = 40
pack_size_mib = 2
encryption = false
[schedule]
max_concurrent = 0
[database]
port = 70000
mode = "snapshot"
""",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    error = info.value
    assert [p.key for p in error.problems] == [
        "storage.compression_level",
        "storage.pack_size_mib",
        "storage.encryption",
        "storage.local_path",
        "schedule.max_concurrent",
        "database.port",
        "database.mode",
    ]
    assert error.path == path
    assert str(error.problems[0]) == ("storage.compression_level: must be an integer from 1 to 22 (got 40)")
    assert "encryption cannot be disabled" in error.problems[2].message
    assert error.problems[3].message == "required"
    lines = str(error).splitlines()
    assert len(lines) == 7
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert lines[0] == f"{path}: storage.compression_level: must be an integer from 1 to 22 (got 40)"


def test_missing_storage_section_names_local_path(tmp_path):
    assert problems_of({}, tmp_path) == {"storage.local_path": "required"}


def test_unknown_keys_get_did_you_mean(tmp_path):
    data = minimal(storage={"compresion_level": 5}, schedule={"time_zone": "UTC"})
    data["scheduel"] = {}
    problems = problems_of(data, tmp_path)
    assert problems["storage.compresion_level"] == "unknown key (did you mean 'compression_level'?)"
    assert "did you mean 'timezone'?" in problems["schedule.time_zone"]
    assert problems["scheduel"] == "unknown section (did you mean 'schedule'?)"


def test_unknown_key_without_close_match_lists_choices(tmp_path):
    problems = problems_of(minimal(schedule={"zzzz": 1}), tmp_path)
    assert "did you mean" not in problems["schedule.zzzz"]
    assert "cron_expression" in problems["schedule.zzzz"]


def test_wrong_types_say_expected_and_given(tmp_path):
    data = minimal(
        storage={"compression": "yes", "compression_level": "3", "local_path": 5},
        schedule={"max_concurrent": 2.5, "cron_expression": 5},
        application={"exclude": "*.tmp", "user_data": ["/ok", 7]},
        database={"enabled": 1},
    )
    data["schedule"]["enabled"] = "true"
    problems = problems_of(data, tmp_path)
    assert problems["storage.compression"] == "must be true or false (got string)"
    assert problems["storage.compression_level"] == "must be an integer from 1 to 22 (got string)"
    assert problems["storage.local_path"] == "must be a path string (got integer)"
    assert problems["schedule.max_concurrent"] == "must be an integer from 1 to 16 (got float)"
    assert problems["schedule.cron_expression"] == "must be a string (got integer)"
    assert problems["schedule.enabled"] == "must be true or false (got string)"
    assert "list of glob patterns" in problems["application.exclude"]
    assert "(got string)" in problems["application.exclude"]
    assert problems["application.user_data[1]"] == "must be a path string (got integer)"
    assert problems["database.enabled"] == "must be true or false (got integer)"


def test_section_that_is_not_a_table(tmp_path):
    problems = problems_of({"storage": {"local_path": "/r"}, "schedule": "daily"}, tmp_path)
    assert problems == {"schedule": "must be a table, written [schedule] (got string)"}


def test_passphrase_command_must_be_a_list(tmp_path):
    problems = problems_of(minimal(storage={"passphrase_command": "pass show x"}), tmp_path)
    assert "list of strings" in problems["storage.passphrase_command"]
    assert '["pass", "show"' in problems["storage.passphrase_command"]
    problems = problems_of(minimal(storage={"passphrase_command": []}), tmp_path)
    assert "storage.passphrase_command" in problems
    config = parse_config(minimal(storage={"passphrase_command": ["pass", "show", "x"]}), base_dir=tmp_path)
    assert config.storage.passphrase_command == ("pass", "show", "x")


def test_secrets_in_storage_are_refused_without_echo(tmp_path):
    secret = "hunter2-storage-secret"
    data = minimal(storage={"encryption_key": secret, "passphrase": secret})
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=tmp_path)
    keys = {p.key: p.message for p in info.value.problems}
    assert set(keys) == {"storage.encryption_key", "storage.passphrase"}
    assert "passphrase_file" in keys["storage.encryption_key"]
    assert "AXISOR_BACKUP_PASSPHRASE" in keys["storage.encryption_key"]
    assert secret not in str(info.value)


def test_database_password_refused_without_echo(tmp_path):
    secret = "pg-secret-9731"
    data = minimal(database={"password": secret, "url": f"postgresql://axisor:{secret}@db.internal/axisor"})
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=tmp_path)
    problems = {p.key: p.message for p in info.value.problems}
    assert set(problems) == {"database.password", "database.url"}
    assert "password_file or PGPASSWORD" in problems["database.password"]
    assert "password" in problems["database.url"]
    assert secret not in str(info.value)
    assert secret not in repr(info.value.problems)


def test_database_url_password_in_query_refused(tmp_path):
    secret = "q-secret-55"
    problems = problems_of(
        minimal(database={"url": f"postgresql://db/axisor?sslmode=require&password={secret}"}),
        tmp_path,
    )
    assert "database.url" in problems
    assert secret not in problems["database.url"]


def test_database_fields_parse(tmp_path):
    data = minimal(
        database={
            "enabled": True,
            "url": "postgresql://axisor_backup@db.internal:5432/axisor",
            "port": 5433,
            "mode": "physical",
            "frequency": "hourly",
            "pg_bin_dir": "/usr/lib/postgresql/16/bin",
        }
    )
    db = parse_config(data, base_dir=tmp_path).database
    assert db.enabled is True
    assert db.url == "postgresql://axisor_backup@db.internal:5432/axisor"
    assert (db.port, db.mode, db.frequency) == (5433, "physical", "hourly")
    assert db.pg_bin_dir == Path("/usr/lib/postgresql/16/bin")
    problems = problems_of(minimal(database={"url": "mysql://db/x", "frequency": "daly"}), tmp_path)
    assert "postgresql://" in problems["database.url"]
    assert "did you mean 'daily'?" in problems["database.frequency"]


# --------------------------------------------------------------------------- remote storage


def test_remote_storage_parses(tmp_path):
    path = write(
        tmp_path,
        """
[storage]
local_path = "/var/backups/axisor"
[[storage.remote_storage]]
provider = "aws-s3"
name = "s3-eu"
bucket_name = "b"
region = "eu-west-1"
credentials_file = "aws.ini"
[[storage.remote_storage]]
provider = "sftp"
name = "box_2"
endpoint = "backup.example:22"
known_hosts = "/etc/axisor/known_hosts"
""",
    )
    remotes = load_config(path).storage.remote_storage
    assert remotes[0] == RemoteStorageConfig(
        provider="aws-s3",
        name="s3-eu",
        bucket_name="b",
        region="eu-west-1",
        credentials_file=tmp_path / "aws.ini",
    )
    assert remotes[1].provider == "sftp"
    assert remotes[1].path_prefix == ""
    assert remotes[1].known_hosts == Path("/etc/axisor/known_hosts")


def test_remote_storage_validation(tmp_path):
    data = minimal(
        storage={
            "remote_storage": [
                {"provider": "aws-s3", "name": "a"},  # no bucket
                {"provider": "sftp", "name": "a", "endpoint": "h"},  # duplicate name
                {"provider": "dropbox", "name": "c", "bucket_name": "x"},
                {"name": "bad name!", "provider": "ftp"},  # no endpoint, bad name
                {"provider": "gcp-storage", "bucket_name": "x"},  # no name
            ]
        }
    )
    problems = problems_of(data, tmp_path)
    assert set(problems) == {
        "storage.remote_storage[0].bucket_name",
        "storage.remote_storage[1].name",
        "storage.remote_storage[2].provider",
        "storage.remote_storage[3].name",
        "storage.remote_storage[3].endpoint",
        "storage.remote_storage[4].name",
    }
    assert problems["storage.remote_storage[0].bucket_name"] == "required for provider 'aws-s3'"
    assert "duplicate name 'a'" in problems["storage.remote_storage[1].name"]
    assert "storage.remote_storage[0]" in problems["storage.remote_storage[1].name"]
    assert "'aws-s3'" in problems["storage.remote_storage[2].provider"]
    assert problems["storage.remote_storage[4].name"] == "required"


def test_remote_storage_must_be_array_of_tables(tmp_path):
    path = write(
        tmp_path,
        '[storage]\nlocal_path = "/r"\n[storage.remote_storage]\nprovider = "ftp"\n',
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.key == "storage.remote_storage"
    assert "[[storage.remote_storage]]" in problem.message


def test_remote_credentials_refused_without_echo(tmp_path):
    access, secret, pw = "AKIAEXAMPLEKEY123", "wJalrXUtnFEMIsecretKEY", "ftp-pass-777"
    data = minimal(
        storage={
            "remote_storage": [
                {
                    "provider": "aws-s3",
                    "name": "s3",
                    "bucket_name": "b",
                    "access_key": access,
                    "secret_key": secret,
                },
                {"provider": "ftp", "name": "f", "endpoint": f"ftp://u:{pw}@host/"},
            ]
        }
    )
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=tmp_path)
    problems = {p.key: p.message for p in info.value.problems}
    assert set(problems) == {
        "storage.remote_storage[0].access_key",
        "storage.remote_storage[0].secret_key",
        "storage.remote_storage[1].endpoint",
    }
    assert "credentials_file" in problems["storage.remote_storage[0].secret_key"]
    assert "never config.toml" in problems["storage.remote_storage[0].access_key"]
    text = str(info.value)
    for value in (access, secret, pw):
        assert value not in text


# --------------------------------------------------------------------------- schedule


def test_timezone_validation(tmp_path):
    ok = parse_config(minimal(schedule={"timezone": "Europe/Paris"}), base_dir=tmp_path)
    assert ok.schedule.timezone == "Europe/Paris"
    problems = problems_of(minimal(schedule={"timezone": "Europe/Pariss"}), tmp_path)
    assert problems["schedule.timezone"].startswith("unknown time zone 'Europe/Pariss'")
    assert "did you mean 'Europe/Paris'?" in problems["schedule.timezone"]
    problems = problems_of(minimal(schedule={"timezone": "../../etc/passwd"}), tmp_path)
    assert "unknown time zone" in problems["schedule.timezone"]


@pytest.mark.parametrize("expression", ["0 2 * * *", "*/15 0-6 1,15 JAN-MAR mon-fri", "30 4 * * SUN", "0 0 1 */2 *"])
def test_cron_accepts(expression, tmp_path):
    config = parse_config(minimal(schedule={"cron_expression": expression}), base_dir=tmp_path)
    assert config.schedule.cron_expression == expression


@pytest.mark.parametrize(
    ("expression", "needle"),
    [
        ("0 2 * *", "5 fields"),
        ("0 2 * * * *", "5 fields"),
        ("", "must not be empty"),
        ("0 2 * * FUNDAY", "day-of-week"),
        ("0 2? * * *", "hour"),
        ("@daily", "5 fields"),
    ],
)
def test_cron_rejects(expression, needle, tmp_path):
    problems = problems_of(minimal(schedule={"cron_expression": expression}), tmp_path)
    assert needle in problems["schedule.cron_expression"]


# --------------------------------------------------------------------------- files


def test_toml_syntax_error_names_line(tmp_path):
    path = write(tmp_path, '[storage]\nlocal_path = "/r"\ncompression_level = = 3\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert "invalid TOML" in problem.message
    assert "line 3" in problem.message
    assert str(info.value).startswith(f"{path}: invalid TOML")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 1
    assert info.value.path == path
    assert "not found" in str(info.value)
    assert str(path) in str(info.value)


def test_config_problem_str():
    assert str(ConfigProblem("a.b", "bad")) == "a.b: bad"
    assert str(ConfigProblem("", "bad")) == "bad"
    assert str(ConfigError([ConfigProblem("a", "x"), ConfigProblem("b", "y")])) == "a: x\nb: y"


def test_config_is_frozen(tmp_path):
    config = parse_config(minimal(), base_dir=tmp_path)
    assert isinstance(config, Config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.storage.compression_level = 9  # type: ignore[misc]


def test_default_config_path(tmp_path, monkeypatch):
    monkeypatch.setenv("AXISOR_BACKUP_CONFIG", str(tmp_path / "custom.toml"))
    assert default_config_path() == tmp_path / "custom.toml"
    monkeypatch.delenv("AXISOR_BACKUP_CONFIG")
    monkeypatch.chdir(tmp_path)
    fallback = default_config_path()
    assert fallback.name == "config.toml"
    assert "axisor-backup" in str(fallback)
    write(tmp_path, "")
    assert default_config_path() == tmp_path / "config.toml"


# --------------------------------------------------------------------------- passphrase


def storage(**kwargs) -> StorageConfig:
    return StorageConfig(local_path=Path("/var/backups/axisor"), **kwargs)


def secret_file(tmp_path: Path, content: str, mode: int = 0o600) -> Path:
    path = tmp_path / "passphrase"
    path.write_text(content, encoding="utf-8")
    path.chmod(mode)
    return path


def test_passphrase_from_env_wins(tmp_path):
    file = secret_file(tmp_path, "from-file\n")
    env = {"AXISOR_BACKUP_PASSPHRASE": "from-env"}
    assert resolve_passphrase(storage(passphrase_file=file), env=env) == "from-env"


def test_empty_env_counts_as_unset(tmp_path):
    file = secret_file(tmp_path, "from-file\n")
    env = {"AXISOR_BACKUP_PASSPHRASE": ""}
    assert resolve_passphrase(storage(passphrase_file=file), env=env) == "from-file"


def test_passphrase_from_file_strips_one_newline(tmp_path):
    file = secret_file(tmp_path, "correct horse \n\n")
    assert resolve_passphrase(storage(passphrase_file=file), env={}) == "correct horse \n"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_passphrase_file_readable_by_others_refused(tmp_path):
    file = secret_file(tmp_path, "s3cr3t-value\n", mode=0o644)
    with pytest.raises(PassphraseError) as info:
        resolve_passphrase(storage(passphrase_file=file), env={})
    message = str(info.value)
    assert str(file) in message
    assert f"chmod 600 {file}" in message
    assert "0644" in message
    assert "s3cr3t-value" not in message
    assert stat.S_IMODE(file.stat().st_mode) == 0o644  # refused, not silently "fixed"


def test_passphrase_file_missing(tmp_path):
    file = tmp_path / "absent"
    with pytest.raises(PassphraseError) as info:
        resolve_passphrase(storage(passphrase_file=file), env={})
    assert str(file) in str(info.value)
    assert "does not exist" in str(info.value)


def test_passphrase_from_command(tmp_path):
    argv = (sys.executable, "-c", "import sys; sys.stdout.write('cmd pass\\n')")
    assert resolve_passphrase(storage(passphrase_command=argv), env={}) == "cmd pass"


def test_passphrase_command_is_not_run_through_a_shell(tmp_path):
    marker = tmp_path / "marker"
    argv = (sys.executable, "-c", "import sys; print(sys.argv[1])", f"x; touch {marker}")
    assert resolve_passphrase(storage(passphrase_command=argv), env={}) == f"x; touch {marker}"
    assert not marker.exists()


def test_failing_command_hides_output(tmp_path):
    script = "import sys; print('leaked-stdout-42'); print('leaked-stderr-42', file=sys.stderr); sys.exit(3)"
    argv = (sys.executable, "-c", script)
    with pytest.raises(PassphraseError) as info:
        resolve_passphrase(storage(passphrase_command=argv), env={})
    message = str(info.value)
    assert sys.executable in message
    assert "status 3" in message
    assert "leaked" not in message
    assert "leaked" not in repr(info.value.__context__)


def test_command_not_found(tmp_path):
    argv = (str(tmp_path / "no-such-program"),)
    with pytest.raises(PassphraseError) as info:
        resolve_passphrase(storage(passphrase_command=argv), env={})
    assert "no-such-program" in str(info.value)
    assert "not found" in str(info.value)


def test_no_passphrase_non_interactive():
    with pytest.raises(PassphraseError) as info:
        resolve_passphrase(storage(), env={}, interactive=False)
    assert str(info.value) == (
        "no passphrase: set AXISOR_BACKUP_PASSPHRASE, storage.passphrase_file or storage.passphrase_command"
    )


def test_empty_passphrase_is_an_error(tmp_path, monkeypatch):
    file = secret_file(tmp_path, "\n")
    with pytest.raises(PassphraseError, match="empty"):
        resolve_passphrase(storage(passphrase_file=file), env={})
    argv = (sys.executable, "-c", "print()")
    with pytest.raises(PassphraseError, match="empty"):
        resolve_passphrase(storage(passphrase_command=argv), env={})
    monkeypatch.setattr(config_secrets.getpass, "getpass", lambda prompt: "")
    with pytest.raises(PassphraseError, match="empty"):
        resolve_passphrase(storage(), env={}, interactive=True)


def test_interactive_prompt_and_confirm(monkeypatch):
    answers = iter(["first-try", "first-try"])
    prompts = []

    def fake_getpass(prompt):
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr(config_secrets.getpass, "getpass", fake_getpass)
    assert resolve_passphrase(storage(), env={}, interactive=True, confirm=True) == "first-try"
    assert prompts[0] == "Repository passphrase: "
    assert len(prompts) == 2

    answers = iter(["one-secret", "two-secret"])
    with pytest.raises(PassphraseError) as info:
        resolve_passphrase(storage(), env={}, interactive=True, confirm=True)
    assert "do not match" in str(info.value)
    assert "one-secret" not in str(info.value) and "two-secret" not in str(info.value)


def test_unencrypted_endpoints_are_refused_unless_allowed(tmp_path: Path) -> None:
    remotes = [
        {"provider": "aws-s3", "name": "s3", "bucket_name": "b", "endpoint": "http://minio.lan:9000"},
        {"provider": "ftp", "name": "old", "endpoint": "ftp://ftp.example"},
        {"provider": "ftp", "name": "bare", "endpoint": "ftp.example"},
    ]
    found = problems_of(minimal(storage={"local_path": "/r", "remote_storage": remotes}), tmp_path)
    for i in range(3):
        assert "is not encrypted" in found[f"storage.remote_storage[{i}].endpoint"]
        assert "allow_insecure = true" in found[f"storage.remote_storage[{i}].endpoint"]
    allowed = [dict(r, allow_insecure=True) for r in remotes] + [
        {"provider": "aws-s3", "name": "tls", "bucket_name": "b", "endpoint": "https://s3.lan"},
        {"provider": "ftp", "name": "ftps", "endpoint": "ftps://ftp.example"},
    ]
    config = parse_config(minimal(storage={"local_path": "/r", "remote_storage": allowed}), base_dir=tmp_path)
    assert [r.allow_insecure for r in config.storage.remote_storage] == [True, True, True, False, False]


def test_local_path_and_state_dir_must_be_folders_or_creatable(tmp_path):
    """A path that is a file (or lies below one) is reported by key path; a folder that
    does not exist yet, below a folder, is fine (init and the engine create it)."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    bad = problems_of(minimal(storage={"local_path": str(afile)}, engine={"state_dir": str(afile / "state")}), tmp_path)
    assert bad["storage.local_path"] == f"{afile} exists and is not a folder"
    assert bad["engine.state_dir"] == f"{afile / 'state'} cannot be created: {afile} is not a folder"
    good = parse_config(
        minimal(storage={"local_path": str(tmp_path / "new" / "repo")}, engine={"state_dir": str(tmp_path)}),
        base_dir=tmp_path,
    )
    assert good.storage.local_path == tmp_path / "new" / "repo" and not (tmp_path / "new").exists()
    path = write(tmp_path, f'[storage]\nlocal_path = "{afile}"\n', name="c.toml")
    r = subprocess.run(
        [sys.executable, "-m", "app.cli", "--config", str(path), "--json", "config", "check"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and json.loads(r.stdout)["problems"] == [
        {"key": "storage.local_path", "message": f"{afile} exists and is not a folder"}
    ], r


# --------------------------------------------------------------------------- deprecated keys

DEPRECATED = {
    "database": {"compression": True, "encryption": False, "incremental": True},
    "schedule": {"parallel_backups": True},
}


def test_deprecated_keys_load_with_a_warning_naming_what_to_do(tmp_path):
    config = parse_config(minimal(**DEPRECATED), base_dir=tmp_path)
    warnings = {w.key: w.message for w in deprecations(config)}
    assert set(warnings) == {
        "database.compression",
        "database.encryption",
        "database.incremental",
        "schedule.parallel_backups",
    }
    assert all(
        m.startswith("deprecated, does nothing: ") and m.endswith("; remove this key") for m in warnings.values()
    )
    assert "storage.compression" in warnings["database.compression"]
    assert "max_concurrent" in warnings["schedule.parallel_backups"]
    assert deprecations(parse_config(minimal(), base_dir=tmp_path)) == ()
    # Still type-checked, and not offered for a typo: they do nothing.
    problems = problems_of(minimal(database={"encryption": "no", "compresion": True}), tmp_path)
    assert problems["database.encryption"] == "must be true or false (got string)"
    assert "did you mean" not in problems["database.compresion"]


def test_config_check_and_every_command_warn_about_deprecated_keys(tmp_path, capsys):
    from app.cli import _main

    lines = "\n".join(
        f"[{section}]\n" + "\n".join(f"{k} = {str(v).lower()}" for k, v in keys.items())
        for section, keys in DEPRECATED.items()
    )
    repo = tmp_path / "repo"
    path = write(tmp_path, f'{lines}\n[storage]\nlocal_path = "{repo}"\n')
    assert _main(["--config", str(path), "--json", "config", "check"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert [w["key"] for w in report["warnings"]] == [
        "database.compression",
        "database.encryption",
        "database.incremental",
        "schedule.parallel_backups",
    ]
    assert _main(["--config", str(path), "config", "check"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}: warning: database.compression: deprecated, does nothing: ")
    assert out[3] == (
        f"{path}: warning: schedule.parallel_backups: deprecated, does nothing: "
        "how many jobs run at once is max_concurrent; remove this key"
    )
    assert len(out) == 5 and out[-1] == f"{path}: ok (0 sources: none)"
    # Any other command says it on stderr before it runs (here: no repository yet).
    _main(["--config", str(path), "snapshots"])
    err = capsys.readouterr().err
    assert f"warning: {path}: database.incremental: deprecated" in err

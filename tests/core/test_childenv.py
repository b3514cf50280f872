"""Children start with an allow-listed environment: never our secrets."""

from core.childenv import child_env

OURS = {
    "PATH": "/usr/bin",
    "HOME": "/root",
    "LC_ALL": "C.UTF-8",
    "TZ": "UTC",
    "AXISOR_BACKUP_PASSPHRASE": "repo-secret",
    "AXISOR_BACKUP_PASSPHRASE_FILE": "/x",
    "PGPASSWORD": "db-secret",
    "PGHOST": "db",
    "AWS_SECRET_ACCESS_KEY": "cloud-secret",
    "AWS_ACCESS_KEY_ID": "AKIA",
    "AZURE_STORAGE_KEY": "az",
    "AXISOR_BACKUP_CONFIG": "/etc/a.toml",
}


def test_notification_command_gets_no_secret():
    env = child_env({"AXISOR_EVENT": "job.failed"}, source=OURS)
    assert env == {"PATH": "/usr/bin", "HOME": "/root", "LC_ALL": "C.UTF-8", "TZ": "UTC", "AXISOR_EVENT": "job.failed"}


def test_postgres_clients_get_libpq_settings_and_a_password_only():
    env = child_env(libpq=True, password=True, source=OURS)
    assert env["PGPASSWORD"] == "db-secret" and env["PGHOST"] == "db"
    assert not {k for k in env if k.startswith(("AWS", "AZURE", "AXISOR"))}


def test_servers_get_no_password_but_find_our_config():
    env = child_env(libpq=True, ours=True, source=OURS)
    assert "PGPASSWORD" not in env and "AXISOR_BACKUP_PASSPHRASE" not in env
    assert env["AXISOR_BACKUP_CONFIG"] == "/etc/a.toml"

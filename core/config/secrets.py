"""The repository passphrase: from the environment, a file, a command or a prompt."""

from __future__ import annotations

import getpass
import os
import shlex
import stat
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from core.config.model import ENV_PASSPHRASE, StorageConfig

# A command that never returns would hang a headless run forever; a minute is long enough
# for a hardware token touch or a password manager unlock.
PASSPHRASE_COMMAND_TIMEOUT = 60.0


class PassphraseError(Exception):
    """No usable passphrase; the message says which source failed and how to fix it."""


def resolve_passphrase(
    storage: StorageConfig,
    *,
    env: Mapping[str, str] = os.environ,
    interactive: bool | None = None,
    confirm: bool = False,
) -> str:
    """The repository passphrase from the first configured source.

    Order: $AXISOR_BACKUP_PASSPHRASE (an empty value counts as unset), then
    storage.passphrase_file, then storage.passphrase_command, then a prompt when
    interactive. A configured source that fails is an error; it does not fall through
    to the next, so a broken setup is never papered over by a prompt.
    """
    from_env = env.get(ENV_PASSPHRASE)
    if from_env:
        return from_env
    if storage.passphrase_file is not None:
        return _passphrase_from_file(storage.passphrase_file)
    if storage.passphrase_command:
        return _passphrase_from_command(storage.passphrase_command)
    if interactive is None:
        interactive = _stdin_is_terminal()
    if interactive:
        return _passphrase_from_prompt(confirm)
    raise PassphraseError(f"no passphrase: set {ENV_PASSPHRASE}, storage.passphrase_file or storage.passphrase_command")


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # stdin was closed
        return False


def _strip_newline(text: str) -> str:
    # Only the one newline an editor or `echo` adds; other whitespace may be meant.
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text


def _passphrase_from_file(path: Path) -> str:
    where = f"storage.passphrase_file {path}"
    try:
        info = path.stat()
    except FileNotFoundError:
        raise PassphraseError(
            f"{where} does not exist; create it holding only the passphrase, "
            f"then run: chmod 600 {shlex.quote(str(path))}"
        ) from None
    except OSError as exc:
        raise PassphraseError(f"{where} cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise PassphraseError(f"{where} is not a regular file")
    # A passphrase others can read is no secret; refuse rather than use it.
    if os.name == "posix" and info.st_mode & 0o077:
        raise PassphraseError(
            f"{where} is readable by group or other users "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {shlex.quote(str(path))}"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise PassphraseError(f"{where} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PassphraseError(f"{where} is not UTF-8 text") from None
    passphrase = _strip_newline(text)
    if not passphrase:
        raise PassphraseError(f"{where} is empty; write the passphrase into it")
    return passphrase


def _passphrase_from_command(argv: tuple[str, ...]) -> str:
    # Messages name the program only: arguments may carry tokens and output is the secret.
    where = f"storage.passphrase_command ({argv[0]})"
    failure: str | None = None
    result: subprocess.CompletedProcess[bytes] | None = None
    try:
        result = subprocess.run(
            list(argv),
            shell=False,
            stdin=subprocess.DEVNULL,  # the terminal may belong to the console UI
            capture_output=True,
            timeout=PASSPHRASE_COMMAND_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        failure = f"{where}: program not found"
    except PermissionError:
        failure = f"{where}: program is not executable"
    except subprocess.TimeoutExpired:
        failure = f"{where} did not finish within {PASSPHRASE_COMMAND_TIMEOUT:g} seconds"
    except OSError as exc:
        failure = f"{where} could not be started: {exc.strerror or type(exc).__name__}"
    # Raised outside the except blocks so no exception holding the output is chained on.
    if failure is not None:
        raise PassphraseError(failure)
    assert result is not None
    if result.returncode < 0:
        raise PassphraseError(f"{where} was killed by signal {-result.returncode}")
    if result.returncode != 0:
        raise PassphraseError(f"{where} exited with status {result.returncode}; run it by hand to see why")
    try:
        text = result.stdout.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None:
        raise PassphraseError(f"{where} printed something that is not UTF-8 text")
    passphrase = _strip_newline(text)
    if not passphrase:
        raise PassphraseError(f"{where} printed an empty passphrase")
    return passphrase


def _passphrase_from_prompt(confirm: bool) -> str:
    try:
        first = getpass.getpass("Repository passphrase: ")
        if not first:
            raise PassphraseError("empty passphrase: a repository passphrase cannot be empty")
        second = getpass.getpass("Repeat passphrase: ") if confirm else first
    except EOFError:
        raise PassphraseError("no passphrase: input ended at the prompt") from None
    if second != first:
        raise PassphraseError("passphrases do not match")
    return first

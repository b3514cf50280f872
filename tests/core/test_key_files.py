"""Key files read from storage: bounded before any derivation, damage named as damage."""

from __future__ import annotations

import json
import time

import pytest

import hostile_support as H
from core.repository.keys import KeyFile, KeyFileDamaged

axenv = H.axenv


def _key_path(axenv):
    (path,) = list((axenv.repo / "keys").iterdir())
    return path


def _edit(path, **changes):
    d = json.loads(path.read_bytes())
    d.update(changes)
    path.write_text(json.dumps(d))


def test_costly_scrypt_parameters_are_refused_before_deriving(axenv):
    axenv.init()
    _edit(_key_path(axenv), p=60)  # took 5.5 s per command when taken as given
    started = time.monotonic()
    res = axenv.cli("snapshots")
    assert time.monotonic() - started < 5
    assert res.code == 9, res
    assert "N=32768, r=8, p=60 are outside" in res.stderr and _key_path(axenv).name in res.stderr


@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda p: p.write_bytes(b"{not json"), "does not parse"),
        (lambda p: p.write_bytes(b""), "does not parse"),
        (lambda p: _edit(p, salt="AAAA"), "wrong length"),
        (lambda p: _edit(p, sum="0" * 64), "fails its checksum"),
        (lambda p: _edit(p, n=1000), "outside"),
        (lambda p: p.write_bytes(b"x" * 10000), "more than a key file"),
    ],
)
def test_a_damaged_only_key_is_damage_not_a_wrong_passphrase(axenv, damage, why):
    axenv.init()
    damage(_key_path(axenv))
    res = axenv.cli("snapshots")
    assert res.code == 9, res
    assert why in res.stderr and "wrong passphrase" not in res.stderr.lower()


def test_a_flipped_bit_in_the_wrapped_key_is_caught_by_the_checksum(axenv):
    axenv.init()
    path = _key_path(axenv)
    d = json.loads(path.read_bytes())
    data = bytearray(__import__("base64").b64decode(d["data"]))
    data[20] ^= 1
    _edit(path, data=__import__("base64").b64encode(bytes(data)).decode())
    res = axenv.cli("snapshots")
    assert res.code == 9 and "fails its checksum" in res.stderr, res


def test_wrong_passphrase_is_still_exit_4(axenv):
    axenv.init()
    res = axenv.cli("snapshots", passphrase="not the passphrase at all")
    assert res.code == 4, res


def test_key_files_without_a_checksum_still_open(axenv):
    axenv.init()
    path = _key_path(axenv)
    d = json.loads(path.read_bytes())
    del d["sum"]
    path.write_text(json.dumps(d))
    assert axenv.cli("snapshots").code == 0


def test_decode_rejects_non_integer_parameters():
    with pytest.raises(KeyFileDamaged):
        KeyFile.decode(
            "k",
            json.dumps(
                {
                    "v": 1,
                    "kdf": "scrypt",
                    "n": 2.5,
                    "r": 8,
                    "p": 1,
                    "created": "",
                    "host": "",
                    "user": "",
                    "salt": "",
                    "data": "",
                }
            ).encode(),
        )


def test_short_passphrases_are_refused_unless_insisted(axenv, tmp_path):
    res = axenv.cli("init", passphrase="short")
    assert res.code == 2 and "at least 12" in res.stderr and "--weak-passphrase" in res.stderr, res
    assert not (axenv.repo / "config").exists()
    assert axenv.cli("init", "--weak-passphrase", passphrase="short").code == 0
    new = tmp_path / "new"
    new.write_text("tiny\n")
    new.chmod(0o600)
    res = axenv.cli("key", "add", "--new-passphrase-file", str(new), passphrase="short")
    assert res.code == 2 and "at least 12" in res.stderr, res
    assert axenv.cli("key", "add", "--new-passphrase-file", str(new), "--weak-passphrase", passphrase="short").code == 0


def test_key_passwd_says_the_master_key_stays(axenv, tmp_path):
    axenv.init()
    new = tmp_path / "new"
    new.write_text("a new and long passphrase\n")
    new.chmod(0o600)
    res = axenv.cli("key", "passwd", "--new-passphrase-file", str(new))
    assert res.code == 0 and "same master key" in res.stdout and "not re-encrypted" in res.stdout, res

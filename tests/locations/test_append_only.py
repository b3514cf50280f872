"""An append-only location (issue 17, item 2): `axisor-backup serve --append-only` as an
OpenSSH forced command. The backed-up host's key reaches only that command, so the host
(or whoever owns it) adds backups there but deletes and replaces nothing; a trusted host's
key to the same folder prunes. Real sshd, real CLI, real repository."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from core.storage.backend import LocationRefused, ObjectExists
from core.storage.factory import open_backend
from locations_support import remote_fields, tree_digest
from servers import listen_serve, openssh_serve, remote_config  # noqa: F401, F811 - fixtures


def test_the_host_adds_backups_but_cannot_destroy_them_and_a_trusted_host_prunes(sites, openssh_serve, tmp_path):  # noqa: F811
    vault = remote_config("ssh-append", openssh_serve)
    sites.add("vault", **remote_fields(vault))
    sites.ok("init")
    first = sites.ok("backup", "--json").json()
    assert [c["target"] for c in first["copies"]] == ["vault"] and not first["copies"][0]["error"]
    (sites.ws.src / "users" / "carol.json").write_text('{"carol": 1}\n')
    sites.ok("backup")
    on_vault = sites.ok("snapshots", "--json").json()["snapshots"]
    held = [{c["name"]: c["state"] for c in s["locations"]} for s in on_vault]
    assert held == [{"local": "complete", "vault": "complete"}] * 2, held

    # The attacker on the host: prune everything, forget, remove keys -- the vault refuses each.
    sites.ws.write_config("[retention]\nkeep_last = 1\nmin_keep = 1\n" + "\n".join(_remote_toml(sites)))
    r = sites.cli("prune", "--location", "vault")
    assert r.code == 25, (r.code, r.err)
    assert "append-only" in r.err and "vault" in r.err and "trusted host" in r.err
    vault_snaps = _vault_snapshots(openssh_serve, vault.path_prefix)
    assert len(vault_snaps) == 2  # nothing forgotten there

    # Below the CLI: every delete or replacement is refused, locks come and go, reads work.
    async def direct() -> None:
        b = open_backend(vault)
        try:
            with pytest.raises(LocationRefused, match="append-only"):
                await b.delete(f"snapshots/{vault_snaps[0]}")
            keys = [i.key async for i in b.list("data/")]
            with pytest.raises(LocationRefused):
                await b.delete(keys[0])
            with pytest.raises(ObjectExists):
                await b.put(keys[0], b"garbage over a pack")
            await b.put("locks/" + "0" * 32, b"{}")
            await b.delete("locks/" + "0" * 32)
            assert await b.get("config")
        finally:
            await b.close()

    asyncio.run(direct())

    # The host's primary is destroyed too: the vault still restores everything.
    shutil.rmtree(sites.ws.repo)
    target = tmp_path / "restored"
    sites.ok("restore", "latest", "--from", "vault", "--target", str(target))
    assert tree_digest(target / str(sites.ws.src).lstrip("/")) == tree_digest(sites.ws.src)

    # A trusted host (its key reaches serve without --append-only) prunes the vault.
    trusted = remote_config("ssh", openssh_serve, path_prefix=vault.path_prefix)
    sites.remotes["vault"] = remote_fields(trusted)
    sites.ws.write_config("[retention]\nkeep_last = 1\nmin_keep = 1\n" + "\n".join(_remote_toml(sites)))
    r = sites.cli("prune", "--location", "vault")
    assert r.code == 0, r.err  # the same prune the host was refused (retention_days keeps both)

    async def trusted_forgets() -> None:
        b = open_backend(trusted)
        try:
            await b.delete(f"snapshots/{vault_snaps[0]}")
        finally:
            await b.close()

    asyncio.run(trusted_forgets())
    assert _vault_snapshots(openssh_serve, vault.path_prefix) == vault_snaps[1:]


@pytest.mark.parametrize("asked", ["../outside", "/etc"])
def test_a_client_cannot_leave_the_forced_folder(openssh_serve, asked):  # noqa: F811
    """The forced command's --path is a ceiling: a client asking for a folder outside it is
    refused by the server, at once (no retries), and the server's reason reaches the client."""
    from core.storage.backend import StorageError

    async def attempt() -> str:
        b = open_backend(remote_config("ssh-append", openssh_serve, path_prefix=asked, retries=0))
        try:
            with pytest.raises(StorageError) as info:
                await b.exists()
            return str(info.value)
        finally:
            await b.close()

    said = asyncio.run(attempt())
    assert "refused the session" in said and "only a relative path below the forced --path" in said, said


def _remote_toml(sites) -> list[str]:
    from locations_support import remote_toml

    return [remote_toml(n, **f) for n, f in sites.remotes.items()]


def _vault_snapshots(server, prefix: str) -> list[str]:
    return sorted(p.name for p in (server.root / prefix / "snapshots").iterdir())


def test_runbook_append_only_locations(sites, openssh_serve, tmp_path):  # noqa: F811
    """docs/OPERATIONS.md, "Append-only locations", its command block run as written with
    the vault of its config (mapped onto the test server's forced append-only key)."""
    import re
    import shlex

    from conftest import ROOT

    text = (ROOT / "docs" / "OPERATIONS.md").read_text()
    start = text.index("\n## Append-only locations\n")
    section = text[start : text.find("\n## ", start + 1)]
    (toml,) = [b for b in re.findall(r"```\n(.*?)```", section, re.S) if "remote_storage" in b]
    assert 'provider = "ssh"' in toml and 'name = "vault"' in toml
    vault = remote_config("ssh-append", openssh_serve, path_prefix="app01")
    sites.add("vault", **remote_fields(vault))
    sites.ok("init")
    sites.ok("backup", "--json")
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    outs = [sites.ok(*shlex.split(line)[1:]).out for line in block.strip().splitlines()]
    assert re.search(r"^vault\s+ssh\s+ok\s", outs[2], re.M), outs[2]
    assert "vault: append-only (axisor-backup serve --append-only)" in outs[2]
    assert "vault" in outs[3]
    # A day later, then the attacker on the host.
    (sites.ws.src / "users" / "dave.json").write_text('{"dave": 1}\n')
    sites.ok("backup")
    sites.ws.write_config("[retention]\nkeep_last = 1\nmin_keep = 1\n" + "\n".join(_remote_toml(sites)))
    before = _vault_snapshots(openssh_serve, "app01")
    assert sites.cli("prune").code == 25
    assert _vault_snapshots(openssh_serve, "app01") == before
    shutil.rmtree(sites.ws.repo)
    target = tmp_path / "back"
    sites.ok("restore", "latest", "--from", "vault", "--target", str(target))
    assert tree_digest(target / str(sites.ws.src).lstrip("/")) == tree_digest(sites.ws.src)


def test_a_key_removed_at_the_source_stays_at_the_vault_and_every_copy_says_so(sites, openssh_serve, tmp_path):  # noqa: F811
    """`key remove` cannot reach an append-only location: copies go on (the backups matter
    more), and each one warns that the old passphrase still opens the vault."""
    vault = remote_config("ssh-append", openssh_serve)
    sites.add("vault", **remote_fields(vault))
    sites.ok("init")
    sites.ok("backup")
    new_pf = tmp_path / "new-passphrase"
    new_pf.write_text("a second passphrase\n")
    new_pf.chmod(0o600)
    sites.ok("key", "add", "--new-passphrase-file", str(new_pf))
    old_key = next(k["id"] for k in sites.ok("key", "list", "--json").json() if k["current"])
    sites.ok("copy", "--to", "vault")
    r = sites.cli("key", "remove", old_key[:12], env={"AXISOR_BACKUP_PASSPHRASE": "a second passphrase"})
    assert r.code == 0, r.err
    (sites.ws.src / "users" / "erin.json").write_text('{"erin": 1}\n')
    r = sites.cli("backup", "--json", env={"AXISOR_BACKUP_PASSPHRASE": "a second passphrase"})
    assert r.code == 0, r.err
    (copy,) = r.json()["copies"]
    assert copy["error"] is None and len(copy["copied"]) == 1
    assert f"keeps keys/{old_key}" in copy["warnings"][0] and "append-only" in copy["warnings"][0]
    assert f"keeps keys/{old_key}" in r.err
    assert (openssh_serve.root / vault.path_prefix / "keys" / old_key).exists()


def test_runbook_the_backed_up_host_was_compromised(sites, openssh_serve, tmp_path):  # noqa: F811
    """docs/OPERATIONS.md, "The backed-up host was compromised", run as written from a clean
    host after the compromised one wiped its primary and tried to prune the vault."""
    import re
    import shlex

    from conftest import ROOT, Workspace

    vault = remote_config("ssh-append", openssh_serve)
    sites.add("vault", **remote_fields(vault))
    sites.ok("init")
    sites.ok("backup")
    (sites.ws.src / "users" / "frank.json").write_text('{"frank": 1}\n')
    sites.ok("backup")
    wanted = tree_digest(sites.ws.src)
    # The attacker: the primary wiped, the vault's prune refused.
    sites.ws.write_config("[retention]\nkeep_last = 1\nmin_keep = 1\n" + "\n".join(_remote_toml(sites)))
    shutil.rmtree(sites.ws.repo)
    assert sites.cli("prune", "--location", "vault").code == 25
    # The clean host: its own (empty) primary, the trusted key to the vault.
    clean = Workspace(tmp_path / "clean", sites.ws.src, tmp_path / "clean" / "repo", tmp_path / "clean" / "config.toml")
    clean.root.mkdir()
    trusted = remote_config("ssh", openssh_serve, path_prefix=vault.path_prefix)
    from locations_support import remote_toml

    clean.write_config(remote_toml("vault", **remote_fields(trusted)))
    text = (ROOT / "docs" / "OPERATIONS.md").read_text()
    start = text.index("\n## The backed-up host was compromised\n")
    (block,) = re.findall(r"```sh\n(.*?)```", text[start : text.find("\n## ", start + 1)], re.S)
    rebuild = tmp_path / "rebuild"
    outs = []
    for line in block.strip().splitlines():
        argv = [str(rebuild) if a == "/srv/rebuild" else a for a in shlex.split(line)[1:]]
        r = clean.cli(*argv, env={"AXISOR_BACKUP_STATE_DIR": str(tmp_path / "clean-state")})
        assert r.code == 0, (line, r.code, r.err)
        outs.append(r.out)
    assert re.search(r"^vault\s+ssh\s+ok\s", outs[0], re.M), outs[0]
    assert tree_digest(rebuild / str(sites.ws.src).lstrip("/")) == wanted
    assert len(list((clean.repo / "snapshots").iterdir())) == 2  # the new primary holds both


def test_serve_listen_gives_each_key_its_policy(listen_serve, tmp_path):  # noqa: F811
    """`serve --listen` (its own SSH server): a key from --authorized-keys gets an
    append-only session, one from --trusted-keys a full one, any other key no login, and no
    client leaves --path."""
    import asyncssh

    from core.storage.backend import StorageError

    host = remote_config("ssh-append", listen_serve, retries=0)
    trusted = remote_config("ssh", listen_serve, path_prefix=host.path_prefix, retries=0)
    stranger_key = tmp_path / "stranger"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(stranger_key))
    stranger_key.chmod(0o600)

    async def run() -> None:
        b, t = open_backend(host), open_backend(trusted)
        try:
            await b.create()
            await b.put("snapshots/" + "a" * 64, b"manifest")
            with pytest.raises(LocationRefused, match="append-only"):
                await b.delete("snapshots/" + "a" * 64)
            with pytest.raises(ObjectExists):
                await b.put("snapshots/" + "a" * 64, b"other")
            await b.put("locks/" + "1" * 32, b"{}")
            await b.delete("locks/" + "1" * 32)
            await t.delete("snapshots/" + "a" * 64)  # the trusted key may
            assert [i.key async for i in t.list("snapshots/")] == []
        finally:
            await b.close()
            await t.close()
        for cfg, said in (
            (remote_config("ssh", listen_serve, key_file=stranger_key, retries=0), "login refused"),
            (remote_config("ssh-append", listen_serve, path_prefix="../outside", retries=0), "refused the session"),
        ):
            s = open_backend(cfg)
            try:
                with pytest.raises(StorageError, match=said):
                    await s.exists()
            finally:
                await s.close()

    asyncio.run(run())

"""Blob ids are separated by type: file bytes equal to a tree's bytes are still stored."""

from core.repository.tree import Tree


def test_a_file_whose_bytes_equal_an_empty_tree_is_stored_and_restored(ws):
    (ws.src / "empty-dir").mkdir()
    (ws.src / "looks-like-a-tree").write_bytes(Tree([]).encode())
    ws.cli("init")
    assert ws.cli("backup").code == 0
    assert ws.cli("verify", "--full").code == 0
    target = ws.root / "out"
    r = ws.cli("restore", "latest", "--target", str(target))
    assert r.code == 0, r.err
    restored = target / str(ws.src).lstrip("/")
    assert (restored / "looks-like-a-tree").read_bytes() == Tree([]).encode()

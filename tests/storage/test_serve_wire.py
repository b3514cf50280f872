"""The serve protocol's frames (core/storage/serve_wire.py): what one side encodes the other
reads back, and whatever bytes arrive instead (a shell's banner, a forged length, noise)
end in WireError or a clean end, never another exception, a hang or an allocation the
sender chose. Then the server (core/storage/serve.py) on a real pipe pair: its policy and
its refusal of a stream that is not frames."""

from __future__ import annotations

import asyncio
import struct

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from core.storage.serve import Server
from core.storage.serve_wire import MAX_HEADER, MAX_PAYLOAD, WireError, encode, read_frame


def _reader(data: bytes) -> asyncio.StreamReader:
    r = asyncio.StreamReader()
    r.feed_data(data)
    r.feed_eof()
    return r


async def _all_frames(data: bytes) -> list:
    r = _reader(data)
    out = []
    while (frame := await read_frame(r)) is not None:
        out.append(frame)
    return out


headers = st.dictionaries(
    st.sampled_from(["id", "op", "key", "offset", "length", "more", "ok", "kind", "error"]),
    st.one_of(st.integers(-(2**40), 2**40), st.text(max_size=40), st.booleans(), st.none()),
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(st.tuples(headers, st.binary(max_size=3000)), max_size=5))
def test_what_is_encoded_is_read_back(frames):
    data = b"".join(bytes(p) for h, body in frames for p in encode(h, body))
    got = asyncio.run(_all_frames(data))
    assert [(h, bytes(b)) for h, b in got] == [({**h, "n": len(body)}, body) for h, body in frames]


@settings(max_examples=400, deadline=None)
@given(noise=st.binary(max_size=200))
def test_noise_ends_in_wire_error_or_a_clean_end(noise):
    try:
        asyncio.run(_all_frames(noise))
    except WireError:
        pass


@pytest.mark.parametrize(
    "data, said",
    [
        (b"Last login: Fri Dec  4 06:00:00 2026\n", "not an axisor-backup serve stream"),
        (struct.pack(">I", MAX_HEADER + 1) + b"x", "not an axisor-backup serve stream"),
        (struct.pack(">I", 2) + msgpack.packb([1]), "not a map"),
        (b"".join(encode({"id": 1}))[:-1], "ended inside"),
    ],
)
def test_each_kind_of_garbage_is_named(data, said):
    with pytest.raises(WireError, match=said):
        asyncio.run(_all_frames(data))


def test_a_forged_payload_length_is_refused_before_it_is_read():
    head = msgpack.packb({"id": 1, "n": MAX_PAYLOAD + 1})
    with pytest.raises(WireError, match="payload length"):
        asyncio.run(_all_frames(struct.pack(">I", len(head)) + head))


async def _ask(server: Server, header: dict, payload: bytes = b"") -> tuple[dict, bytes]:
    frames = await server.handle(header, payload)
    data = b"".join(bytes(p) for f in frames for p in f)
    (got,) = (await _all_frames(data))[-1:]
    return got


async def test_append_only_refuses_deletes_outside_locks_and_every_replacement(tmp_path):
    server = Server(tmp_path / "repo", append_only=True)
    await server.backend.create()
    assert (await _ask(server, {"id": 1, "op": "put", "key": "snapshots/aa"}, b"manifest"))[0]["ok"]
    head, _ = await _ask(server, {"id": 2, "op": "put", "key": "snapshots/aa"}, b"other")
    assert (head["ok"], head["kind"]) == (False, "exists")
    head, _ = await _ask(server, {"id": 3, "op": "delete", "key": "snapshots/aa"})
    assert (head["ok"], head["kind"]) == (False, "refused") and "append-only" in head["error"]
    head, _ = await _ask(server, {"id": 4, "op": "delete_temporary", "key": "data/.tmp-x"})
    assert head["kind"] == "refused"
    assert (await _ask(server, {"id": 5, "op": "put", "key": "locks/l1"}, b"{}"))[0]["ok"]
    assert (await _ask(server, {"id": 6, "op": "delete", "key": "locks/l1"}))[0]["ok"]
    head, body = await _ask(server, {"id": 7, "op": "get", "key": "snapshots/aa"})
    assert head["ok"] and body == b"manifest"
    for bad in ("../etc/passwd", "/etc/passwd", "a//b", "snapshots/../../x"):
        head, _ = await _ask(server, {"id": 8, "op": "get", "key": bad})
        assert head["ok"] is False and "invalid object key" in head["error"], bad
    head, _ = await _ask(server, {"id": 9, "op": "format_disk"})
    assert head["ok"] is False and "unknown operation" in head["error"]
    assert (await server.backend.get("snapshots/aa")) == b"manifest"


async def test_the_server_ends_a_session_that_is_not_frames(tmp_path):
    server = Server(tmp_path / "repo", append_only=False)
    reader = _reader(b"SSH-2.0-OpenSSH_9.6\r\n")

    class Sink:
        def writelines(self, parts):
            raise AssertionError("answered garbage")

        async def drain(self):
            pass

    with pytest.raises(WireError, match="not an axisor-backup serve stream"):
        await server.serve(reader, Sink())  # type: ignore[arg-type]

"""A stored file's content as a stream of chunks, in order, with a bounded read-ahead.

For consumers that take bytes as they come (a tar extractor, a pipe into pg_restore): memory
stays at ``prefetch`` chunks whatever the file's size.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence

from core.repository.format import BlobType
from core.repository.repository import Repository

PREFETCH = 8


async def iter_content(repo: Repository, ids: Sequence[bytes], prefetch: int = PREFETCH) -> AsyncGenerator[bytes, None]:
    """Yield each data blob of ``ids`` in order; the index must be loaded."""
    pending: list[asyncio.Future] = []
    nxt = 0
    try:
        while nxt < len(ids) or pending:
            while nxt < len(ids) and len(pending) < prefetch:
                pending.append(asyncio.ensure_future(repo.load_blob(BlobType.DATA, ids[nxt])))
                nxt += 1
            yield await pending.pop(0)
    finally:
        for f in pending:
            f.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

"""Identifiers: 26 characters, sortable by time, unique."""

from __future__ import annotations

from mailgate.domain.ids import new_id, new_ids


def test_ids_sort_by_time_and_do_not_repeat() -> None:
    ids = [new_id(now_ms=1_700_000_000_000 + i) for i in range(1000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 26 and i.isalnum() and i == i.lower() for i in ids)
    same_ms = {new_id(now_ms=5) for _ in range(1000)}
    assert len(same_ms) == 1000
    assert new_id(now_ms=2**47) > new_id(now_ms=2**47 - 1)


def test_ids_made_together_are_unique_and_spelled_like_single_ones() -> None:
    ids = new_ids(500, now_ms=1_700_000_000_000)
    assert len(set(ids)) == 500
    assert all(len(i) == 26 and i.isalnum() and i == i.lower() for i in ids)
    # The first nine characters (45 of the 48 time bits) are those of a single id of that time.
    single = new_id(now_ms=1_700_000_000_000)
    assert {i[:9] for i in ids} == {single[:9]}
    assert new_ids(0) == []
    assert new_ids(3, now_ms=2**47)[0] > new_id(now_ms=2**47 - 1)


def test_random_bytes_are_handed_out_once_and_a_forked_child_reads_its_own() -> None:
    import os

    from mailgate.domain.ids import random_bytes

    chunks = [random_bytes(10) for _ in range(2000)]  # several reads of the OS's source
    assert len(set(chunks)) == len(chunks) and {len(c) for c in chunks} == {10}
    assert len(random_bytes(10_000)) == 10_000
    random_bytes(1)  # the buffer now holds bytes a child must not reuse
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, random_bytes(16))
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 16
    assert child != random_bytes(16)

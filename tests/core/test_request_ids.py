"""Ids the project makes itself: unique, growing within a process, different after a fork."""

from __future__ import annotations

import os

from consensus.request_ids import new_request_id


def test_ids_grow_and_are_unique() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids), "growing ids append to the index instead of landing anywhere"
    assert all(len(i) == 28 and int(i, 16) >= 0 for i in ids)


def test_a_forked_child_draws_its_own_prefix() -> None:
    parent = new_request_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its id and leave without running pytest's teardown
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child[:16] != parent[:16]

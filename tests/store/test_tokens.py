"""Random tokens (run tokens, lease tokens, generated instance ids) never repeat, not even
across a fork."""

from __future__ import annotations

import os
import re

from perdure.store.common.tokens import random_hex


def test_random_hex_gives_twice_as_many_hex_digits_as_bytes_and_never_the_same_twice():
    tokens = [random_hex(10) for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{20}", token) for token in tokens)
    assert len(set(tokens)) == len(tokens)
    assert re.fullmatch(r"[0-9a-f]{32}", random_hex(16))


def test_a_forked_child_draws_other_tokens_than_its_parent():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first token, to the parent
        os.write(write, random_hex(16).encode())
        os._exit(0)
    os.close(write)
    parents = random_hex(16)
    childs = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(childs) == 32 and childs != parents

"""Random tokens: generated instance ids, run tokens, lease tokens.

They must never repeat (a run token names one run of an id for ever, a lease token fences
out every earlier holder), but they guard nothing: whoever may reach the store may read
them. So they come from one pseudo-random generator per process, seeded from the
operating system's entropy (its whole state: 19,937 bits) and seeded again in a child
after ``fork``, rather than from a system call each (``secrets`` reads the kernel's random
source at every call: five times per start → result on the hot path). Secrets (the web
layer's session keys and CSRF tokens) use :mod:`secrets`.
"""

from __future__ import annotations

import os
import random

_generator = random.Random()  # seeded from os.urandom
# A forked child would otherwise draw the very tokens its parent draws.
os.register_at_fork(after_in_child=_generator.seed)


def random_hex(nbytes: int) -> str:
    """``nbytes`` random bytes as ``2 * nbytes`` lowercase hex digits."""
    return f"{_generator.getrandbits(8 * nbytes):0{2 * nbytes}x}"

"""glibc's allocator, set for a long-running process that scores text with torch.

With glibc's defaults a worker's resident memory climbs in steps for as long as it runs: each
batch of a new shape leaves large freed blocks in the heap (glibc raises its mmap threshold after
the first large free, so later tensors come from the heap, not from mmap) and every thread gets an
arena of its own. ``bench/soak.py`` measured it: a worker +18 % and the sink +20 % over ten minutes,
against resident memory about half as large and flat once the threshold is fixed and the arenas
capped (the README's Soak paragraph has the figures).

:func:`tune_allocator` sets both through ``mallopt`` at process start, before torch allocates; the
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_ARENA_MAX`` environment variables do the same for a process
you cannot change. On a C library that is not glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

#: ``mallopt`` parameters (glibc's ``malloc.h``).
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: Blocks from this size up are mmapped and go back to the system when freed (glibc's starting
#: value, but fixed: setting it turns off the dynamic raise that makes memory grow).
MMAP_THRESHOLD_BYTES = 128 * 1024
#: Arenas at most: two cores' worth (glibc's default is eight per core).
ARENA_MAX = 2


def tune_allocator(enabled: bool = True) -> bool:
    """Fix glibc's mmap threshold and cap its arenas; True when both were set.

    ``enabled`` False (``DRIFTWARDEN_TUNE_ALLOCATOR=false``) leaves glibc's defaults."""
    if not enabled:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (musl's mallopt does nothing)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.debug("no glibc mallopt here; the allocator keeps its defaults")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 and mallopt(M_ARENA_MAX, ARENA_MAX) == 1
    if not done:
        log.warning("glibc refused the allocator settings (mallopt); memory may grow in steps over a long run. "
                    "Set MALLOC_MMAP_THRESHOLD_=%d and MALLOC_ARENA_MAX=%d in the environment instead",
                    MMAP_THRESHOLD_BYTES, ARENA_MAX)
    return done

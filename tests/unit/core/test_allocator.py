"""The allocator settings: freed tensors' memory goes back to the system instead of staying resident."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from unittest import mock

import pytest

from driftwarden.core import allocator
from driftwarden.core.allocator import tune_allocator

# One large block freed (16 MB: glibc raises it up to 32 MB) raises glibc's mmap threshold (and
# its trim threshold with it), so the 1 MB blocks that follow come from the heap and stay
# resident after they are freed; with the threshold fixed they are mmapped and unmapped. A live
# block above them keeps the heap from shrinking (as a long-lived object does in a real process).
# The child prints its resident MB after freeing.
_CHILD = textwrap.dedent("""
    import ctypes, resource, sys
    from driftwarden.core.allocator import tune_allocator
    tune_allocator(sys.argv[1] == "tuned")
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    big = libc.malloc(16 << 20); ctypes.memset(big, 1, 16 << 20); libc.free(big)
    blocks = [libc.malloc(1 << 20) for _ in range(200)]
    pin = libc.malloc(512 << 10)  # a live block above them (no free chunk that large: from the top)
    for b in blocks:
        ctypes.memset(b, 1, 1 << 20)
    for b in blocks:
        libc.free(b)
    pages = int(open("/proc/self/statm").read().split()[1])
    print(pages * resource.getpagesize() // (1 << 20))
""")


def _resident_mb_after_free(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}  # glibc's own variables would decide
    done = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_blocks_leave_the_process_once_the_allocator_is_tuned():
    default, tuned = _resident_mb_after_free("default"), _resident_mb_after_free("tuned")
    assert default - tuned > 150, f"resident after freeing 200 MB: default {default} MB, tuned {tuned} MB"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuning_reports_success_on_glibc():
    assert tune_allocator(True) is True


def test_tuning_off_leaves_the_defaults():
    with mock.patch.object(allocator.ctypes, "CDLL") as cdll:
        assert tune_allocator(False) is False
    cdll.assert_not_called()


def test_a_c_library_without_mallopt_keeps_its_defaults():
    with mock.patch.object(allocator.ctypes, "CDLL", side_effect=OSError("no libc")):
        assert tune_allocator(True) is False

"""keep_freed_memory: a freed 16 MB buffer stays in the process for the next batch, or, when turned
off, goes back to the kernel as glibc does by default. Each case runs in its own process."""
import os
import subprocess
import sys

PROBE = """
import ctypes
from memrec.runtime import keep_freed_memory

applied = keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
size = 16 << 20
block = libc.malloc(size)
libc.memset(block, 1, size)
libc.free(block)

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc.mallinfo2.restype = MallInfo2
print(applied, libc.mallinfo2().fordblks >= size)
"""


def probe(**env) -> str:
    result = subprocess.run([sys.executable, "-c", PROBE], env={**os.environ, **env}, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_freed_buffers_stay_in_the_process():
    assert probe(MEMREC_MALLOC_TUNING="1") == "True True"


def test_turned_off_leaves_glibc_defaults():
    assert probe(MEMREC_MALLOC_TUNING="0") == "False False"

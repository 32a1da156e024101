# attack: ptrace another process (the sandbox's init, then a child of its own)
# expect: contained
import ctypes
import os
import time

libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH = 16
child = os.fork()
if child == 0:
    time.sleep(5)
    os._exit(0)
for pid in [1, child]:
    if libc.ptrace(PTRACE_ATTACH, pid, None, None) == 0:
        print("ESCAPED ptrace attached to", pid)
os.kill(child, 9)

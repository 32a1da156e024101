# attack: the cap is per sample, not per process: 4 processes of 600 MiB each (each under any per-process limit)
# expect: limit=memory
import os
import time

for _ in range(4):
    if os.fork() == 0:
        block = bytearray(600 << 20)
        block[::4096] = b"x" * len(block[::4096])
        time.sleep(30)
        os._exit(0)
time.sleep(30)

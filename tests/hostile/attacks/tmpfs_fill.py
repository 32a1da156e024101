# attack: fill the private /tmp (a tmpfs in RAM) and /dev/shm
# expect: limit=disk|memory
import os

block = b"x" * (8 << 20)
for target in ["/tmp/fill", "/dev/shm/fill"]:
    try:
        for i in range(10_000):
            with open(f"{target}-{i}", "wb") as f:
                f.write(block)
    except OSError:
        pass
raise SystemExit(1)

# attack: kill(-1) and kill of low pids: every process the sample can signal
# expect: contained
import os
import signal

for pid in [-1, 1, 2]:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass

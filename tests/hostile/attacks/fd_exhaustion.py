# attack: open descriptors without end
# expect: contained
import os

fds = []
try:
    while True:
        fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
if len(fds) > 1024:
    print("ESCAPED", len(fds), "descriptors")

# attack: find what an earlier sample left (run right after persist_write.py on the same worker)
# expect: contained
import os

for path in ["/tmp/dscoder-persist", "/dev/shm/dscoder-persist", "dscoder-persist",
             os.path.expanduser("~/dscoder-persist"), "/var/tmp/dscoder-persist"]:
    if os.path.exists(path):
        print("ESCAPED found", path)

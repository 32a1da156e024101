# attack: leave files for the next sample (in /tmp, /dev/shm, the work directory, $HOME)
# expect: contained
import os

for path in ["/tmp/dscoder-persist", "/dev/shm/dscoder-persist", "dscoder-persist",
             os.path.expanduser("~/dscoder-persist"), "/var/tmp/dscoder-persist"]:
    try:
        with open(path, "w") as f:
            f.write("{{TOKEN}}")
    except OSError:
        pass

# attack: write outside the work directory: system directories, home, /var/tmp, the host /tmp, the checkout
# expect: contained
import os

for directory in ["/", "/usr", "/usr/local/bin", "/etc", "/root", "/home", "/var/tmp", "/tmp/..", "/opt", "{{CHECKOUT}}"]:
    try:
        with open(os.path.join(directory, "dscoder-escape-{{TOKEN}}"), "w") as f:
            f.write("x")
    except OSError:
        pass

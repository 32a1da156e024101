# attack: read files outside the allowlist: planted canaries in home directories, /srv, /opt, /var, /run, the host /tmp and the checkout
# expect: contained
import os

found = []
for top in ["/root", "/home", "/srv", "/opt", "/var", "/run", "/mnt", "/media", "/work", "/tmp", "/dev/shm", "{{CHECKOUT}}"]:
    for directory, _, files in os.walk(top):
        for name in files:
            if name.startswith("dscoder-canary"):
                try:
                    with open(os.path.join(directory, name)) as f:
                        found.append((os.path.join(directory, name), f.read(40)))
                except OSError:
                    found.append((os.path.join(directory, name), "(listed)"))
for path in ["/etc/shadow", "/root/.ssh/id_rsa", "/root/.bash_history", "/proc/1/environ"]:
    try:
        with open(path) as f:
            if f.read(1) and path != "/proc/1/environ":
                found.append((path, "read"))
    except OSError:
        pass
if found:
    print("ESCAPED", found)

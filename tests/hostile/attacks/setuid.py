# attack: become root: setuid(0), a setuid binary, any capability left in any set
# expect: contained
import os
import subprocess

try:
    os.setuid(0)
    print("ESCAPED setuid(0)")
except OSError:
    pass
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]:
    if int(status[field].strip(), 16) != 0:
        print("ESCAPED", field, status[field].strip())
if status["NoNewPrivs"].strip() != "1":
    print("ESCAPED no_new_privs is off")
for binary in ["/usr/bin/su", "/usr/bin/passwd", "/usr/bin/mount", "/usr/bin/newgrp"]:
    if os.path.exists(binary):
        done = subprocess.run([binary, "--help"], capture_output=True, text=True)
        if os.geteuid() == 0:
            print("ESCAPED", binary)

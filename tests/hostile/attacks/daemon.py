# attack: a double-forked daemon that outlives the sample ({{TOKEN}} names it in its command line)
# expect: contained
import os
import subprocess

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        subprocess.Popen(["sleep", "60", "{{TOKEN}}"], start_new_session=True)
        os._exit(0)
    os._exit(0)

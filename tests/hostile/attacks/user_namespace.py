# attack: a nested user namespace (uid 0 inside, the kernel's userns surface): unshare(2), clone(2) and unshare -Ur
# expect: contained
import ctypes
import subprocess

CLONE_NEWUSER = 0x10000000
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(CLONE_NEWUSER) == 0:
    print("ESCAPED unshare(CLONE_NEWUSER)")
done = subprocess.run(["unshare", "-Ur", "id", "-u"], capture_output=True, text=True)
if done.returncode == 0 and done.stdout.strip() == "0":
    print("ESCAPED unshare -Ur gave uid 0")
done = subprocess.run(["unshare", "-Ur", "sh", "-c", "mount -t tmpfs none /tmp && echo mounted"],
                      capture_output=True, text=True)
if "mounted" in done.stdout:
    print("ESCAPED mounted a tmpfs in a user namespace")

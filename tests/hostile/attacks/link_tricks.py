# attack: symlinks and hard links in the work directory aimed at host files, for the cleanup to delete or chown through
# expect: contained
import os

for i, target in enumerate(["{{CANARY_DIR}}", "{{CANARY_FILE}}", "/usr/bin", "/etc/passwd", "/tmp/..", "/"]):
    try:
        os.symlink(target, f"link-{i}")
    except OSError:
        pass
    try:
        os.link(target, f"hard-{i}")
        print("ESCAPED hard link to", target)
    except OSError:
        pass
os.makedirs("deep/er", exist_ok=True)
os.symlink("{{CANARY_DIR}}", "deep/er/inner")

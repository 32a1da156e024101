# attack: flood stdout and stderr (1 GiB each) to fill the host's disk or memory with captured output
# expect: contained
import sys

line = "y" * 1023 + "\n"
for _ in range(1 << 20):
    sys.stdout.write(line)
    sys.stderr.write(line)

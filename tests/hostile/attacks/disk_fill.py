# attack: fill the disk from the work directory with many files, each under the per-file limit
# expect: limit=disk
block = b"x" * (32 << 20)
for i in range(10_000):
    with open(f"fill-{i}", "wb") as f:
        f.write(block)

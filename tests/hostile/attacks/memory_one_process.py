# attack: one process touches far more memory than the sample's cap (64 MiB pages, written)
# expect: limit=memory
chunks = []
while True:
    chunks.append(bytearray(64 << 20))
    chunks[-1][::4096] = b"x" * len(chunks[-1][::4096])

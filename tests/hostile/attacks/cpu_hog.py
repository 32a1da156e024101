# attack: busy threads and processes on every core
# expect: timeout
import os
import threading

def spin():
    while True:
        pass

for _ in range(4):
    if os.fork() == 0:
        spin()
for _ in range(4):
    threading.Thread(target=spin, daemon=True).start()
spin()

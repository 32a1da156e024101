# attack: ignore every catchable signal and keep running past the time limit
# expect: timeout
import signal

for sig in [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGXCPU, signal.SIGUSR1]:
    signal.signal(sig, signal.SIG_IGN)
while True:
    pass

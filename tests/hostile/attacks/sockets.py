# attack: reach the host through sockets: TCP and UDP to its loopback, an abstract unix socket, path sockets (mode 0777) under /run, /var/tmp, /run/lock and /tmp
# expect: contained
import socket

reached = []
for family, kind, address in [
        (socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", {{TCP_PORT}})),
        (socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", {{UDP_PORT}})),
        (socket.AF_UNIX, socket.SOCK_STREAM, "\0{{ABSTRACT}}"),
        *[(socket.AF_UNIX, socket.SOCK_STREAM, path) for path in {{PATHS}}]]:
    s = socket.socket(family, kind)
    s.settimeout(2)
    try:
        if kind == socket.SOCK_DGRAM:
            s.sendto(b"hello", address)
        else:
            s.connect(address)
            s.sendall(b"hello")
            if s.recv(16):
                reached.append(address)
    except OSError:
        pass
    finally:
        s.close()
if reached:
    print("ESCAPED", reached)

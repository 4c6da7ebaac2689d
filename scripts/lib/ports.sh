# Shell helpers for scripts that start their own servers. Source it:
#   . "$ROOT/scripts/lib/ports.sh"

# free_ports N: print N distinct TCP ports on 127.0.0.1 that were free a
# moment ago. The sockets are held until all are picked, so no port comes twice.
free_ports() {
    /usr/bin/python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

#!/usr/bin/env python3
"""The API server's ClusterIP for pods on the test's pod network, without kube-proxy.

  relay.py --netns /run/netns/NAME --listen 10.0.0.1:443 --target 127.0.0.1:PORT

The listening socket is created inside the network namespace NAME (which holds
10.0.0.1/32 on its loopback and 10.244.0.2 on the bridge), through setns(2)
called with ctypes (Python 3.11 has no os.setns). The thread then returns to
the host's namespace, so every outgoing connection is made from the host to
the API server's loopback port. A socket keeps the namespace it was created
in: pods reach 10.0.0.1:443 inside NAME, the relay reaches 127.0.0.1 on the
host, and nothing is forwarded or routed by the host's kernel.

Only loopback targets are accepted. At most --max-connections at a time.
Prints "listening" on stdout once the socket is bound; exits on SIGTERM.
"""

import argparse
import ctypes
import ipaddress
import os
import signal
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "setns: " + os.strerror(err))


def netns_id(path):
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def addr(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve(client, target, slots):
    try:
        try:
            upstream = socket.create_connection(target, timeout=5)
        except OSError as e:
            print("relay: connect %s:%d: %s" % (target[0], target[1], e), file=sys.stderr, flush=True)
            return
        upstream.settimeout(None)
        with upstream:
            back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
            back.start()
            pump(client, upstream)
            back.join()
    finally:
        client.close()
        slots.release()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--netns", required=True)
    p.add_argument("--listen", required=True, type=addr)
    p.add_argument("--target", required=True, type=addr)
    p.add_argument("--max-connections", type=int, default=256)
    args = p.parse_args()
    if not ipaddress.ip_address(args.target[0]).is_loopback:
        raise SystemExit("relay: the target must be a loopback address, not %s" % args.target[0])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    host_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
    target_ns = os.open(args.netns, os.O_RDONLY)
    host_id = netns_id("/proc/thread-self/ns/net")
    setns(target_ns)
    try:
        if netns_id("/proc/thread-self/ns/net") != netns_id(args.netns):
            raise SystemExit("relay: setns did not enter %s" % args.netns)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(args.listen)
        listener.listen(128)
    finally:
        setns(host_ns)
    if netns_id("/proc/thread-self/ns/net") != host_id:
        raise SystemExit("relay: could not return to the host's network namespace")
    os.close(target_ns)
    os.close(host_ns)
    print("listening", flush=True)

    slots = threading.BoundedSemaphore(args.max_connections)
    while True:
        client, _ = listener.accept()
        if not slots.acquire(timeout=5):
            client.close()
            continue
        threading.Thread(target=serve, args=(client, args.target, slots), daemon=True).start()


if __name__ == "__main__":
    main()

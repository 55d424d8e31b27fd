"""A loopback TCP forwarder a test can hold (what arrives is kept, not passed on), release or
cut: a link that goes quiet under a request, then drops (tests/test_run_keeper.py)."""
from __future__ import annotations

import socket
import threading


class _Pipe:
    """One direction of a proxied connection; held, it keeps what arrives until released."""

    def __init__(self, src: socket.socket, dst: socket.socket, held: bool) -> None:
        self.src, self.dst, self.held = src, dst, held
        self.kept: list[bytes] = []
        self.lock = threading.Lock()

    def pump(self, proxy: HoldingProxy) -> None:
        try:
            while data := self.src.recv(65536):
                with self.lock:
                    if self.held:
                        self.kept.append(data)
                        proxy.count_held(len(data))
                    else:
                        self.dst.sendall(data)
        except OSError:
            pass
        for s in (self.src, self.dst):
            _shut(s)

    def release(self) -> None:
        with self.lock:
            try:
                for data in self.kept:
                    self.dst.sendall(data)
            except OSError:
                pass
            self.kept.clear()
            self.held = False


def _shut(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class HoldingProxy:
    """A loopback TCP forwarder whose connections can be held (what arrives is kept, not
    passed on), released, or cut: a link that goes quiet under a request, then drops."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.links: list[tuple[socket.socket, socket.socket, list[_Pipe]]] = []
        self.hold_new = False
        self.held_bytes = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def count_held(self, n: int) -> None:
        with self.lock:
            self.held_bytes += n

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self.listener.accept()
            except OSError:
                return
            try:
                far = socket.create_connection(self.target)
            except OSError:  # nothing listens (the box's agent is restarting): as a refusal
                near.close()
                continue
            with self.lock:
                pipes = [_Pipe(near, far, self.hold_new), _Pipe(far, near, self.hold_new)]
                self.hold_new = False
                self.links.append((near, far, pipes))
            for pipe in pipes:
                threading.Thread(target=pipe.pump, args=(self,), daemon=True).start()

    def hold_all(self, towards_client_only: bool = False) -> None:
        with self.lock:
            self.held_bytes = 0
            pipes = [p for _, _, link in self.links
                     for p in (link[1:] if towards_client_only else link)]
        for pipe in pipes:
            with pipe.lock:
                pipe.held = True

    def hold_next(self) -> None:
        with self.lock:
            self.held_bytes = 0
            self.hold_new = True

    def release_all(self) -> None:
        with self.lock:
            pipes = [p for _, _, link in self.links for p in link]
        for pipe in pipes:
            pipe.release()

    def cut_all(self) -> None:
        with self.lock:
            links = list(self.links)
        for near, far, _ in links:
            _shut(near)
            _shut(far)

    def close(self) -> None:
        self.listener.close()
        self.cut_all()

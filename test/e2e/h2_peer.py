"""An independent HTTP/2 peer for test/e2e/h2-independent-peer.test.ts: python-h2 (hyper-h2, Debian's python3-h2),
whose state machine raises on any frame a conforming peer must not send (flow control, stream states, HPACK).

  h2_peer.py server            an h2c server on 127.0.0.1; prints {"port": N} and serves until stdin closes
  h2_peer.py client PORT AUTH  runs the scenarios against PORT with :authority AUTH; prints one JSON line of results
"""
import json
import os
import socket
import sys
import threading

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

BIG = 300 * 1024
LONG_HEADER = 20_000


def pattern(n, seed):
    return bytes(((i * 31 + seed) & 0xFF) for i in range(n))


# --- server ----------------------------------------------------------------------------------------------------


class ServerConnection:
    def __init__(self, sock):
        self.sock = sock
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        self.requests = {}
        self.outgoing = {}  # stream id -> bytes still to send (flow control)

    def run(self):
        self.conn.initiate_connection()
        self.flush()
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            for event in self.conn.receive_data(data):
                self.on_event(event)
            self.flush()

    def flush(self):
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def on_event(self, event):
        if isinstance(event, h2.events.RequestReceived):
            self.requests[event.stream_id] = [dict(event.headers), bytearray()]
            if event.stream_ended is not None:
                self.respond(event.stream_id)
        elif isinstance(event, h2.events.DataReceived):
            if event.stream_id in self.requests:
                self.requests[event.stream_id][1] += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            if event.stream_id in self.requests:
                self.respond(event.stream_id)
        elif isinstance(event, h2.events.WindowUpdated):
            for stream_id in list(self.outgoing):
                self.send_body(stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self.outgoing.pop(event.stream_id, None)
            self.requests.pop(event.stream_id, None)

    def respond(self, stream_id):
        headers, body = self.requests.pop(stream_id)
        path = headers.get(b':path', b'')
        if path == b'/echo':
            names = b','.join(sorted(k for k in headers if not k.startswith(b':')))
            self.conn.send_headers(stream_id, [(b':status', b'200'), (b'x-body-len', str(len(body)).encode()), (b'x-seen', names)])
            self.outgoing[stream_id] = bytes(body)
            self.send_body(stream_id)
        elif path == b'/big':
            self.conn.send_headers(stream_id, [(b':status', b'200'), (b'content-length', str(BIG).encode())])
            self.outgoing[stream_id] = pattern(BIG, 7)
            self.send_body(stream_id)
        elif path == b'/trailers':
            self.conn.send_headers(stream_id, [(b':status', b'200'), (b'content-type', b'application/grpc')])
            self.conn.send_data(stream_id, b'\x00\x00\x00\x00\x05hello')
            self.conn.send_headers(stream_id, [(b'grpc-status', b'0'), (b'grpc-message', b'ok')], end_stream=True)
        elif path == b'/long-header':
            # One field longer than a frame: python-h2 sends HEADERS + CONTINUATION.
            self.conn.send_headers(stream_id, [(b':status', b'200'), (b'x-long', b'v' * LONG_HEADER)], end_stream=True)
        else:
            self.conn.send_headers(stream_id, [(b':status', b'404')], end_stream=True)

    def send_body(self, stream_id):
        try:
            self.send_body_now(stream_id)
        except h2.exceptions.StreamClosedError:
            # Reset by the proxy (its client went away) in the same read as a window update.
            self.outgoing.pop(stream_id, None)

    def send_body_now(self, stream_id):
        data = self.outgoing.get(stream_id)
        if data is None:
            return
        while data:
            window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.outgoing[stream_id] = data
                return
            self.conn.send_data(stream_id, data[:window])
            data = data[window:]
        del self.outgoing[stream_id]
        self.conn.end_stream(stream_id)


def serve():
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(64)
    print(json.dumps({'port': listener.getsockname()[1]}), flush=True)

    def accept():
        while True:
            sock, _ = listener.accept()
            threading.Thread(target=ServerConnection(sock).run, daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    sys.stdin.read()  # until the test closes stdin


# --- client ----------------------------------------------------------------------------------------------------


class Client:
    def __init__(self, port, authority, settings=None):
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=10)
        self.authority = authority
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        if settings:
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.conn.initiate_connection()
        self.streams = {}
        self.events = []
        self.flush()

    def flush(self):
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def request(self, path, body=b'', extra=(), priority=False):
        stream_id = self.conn.get_next_available_stream_id()
        headers = [(b':method', b'POST' if body else b'GET'), (b':scheme', b'http'), (b':authority', self.authority), (b':path', path)]
        headers += list(extra)
        kwargs = {'priority_weight': 200, 'priority_depends_on': 0} if priority else {}
        self.conn.send_headers(stream_id, headers, end_stream=not body, **kwargs)
        self.streams[stream_id] = {'headers': None, 'body': bytearray(), 'trailers': None, 'ended': False, 'reset': None, 'pending': body}
        self.send_pending(stream_id)
        self.flush()
        return stream_id

    def send_pending(self, stream_id):
        s = self.streams[stream_id]
        data = s['pending']
        if not data:
            return
        while data:
            window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            if window <= 0:
                break
            # Some frames padded: the proxy must take padding off and count it (and its length byte) against the window.
            pad = 10 if len(data) % 3 == 0 and window > 20 else 0
            chunk = data[: window - pad - 1] if pad else data[:window]
            self.conn.send_data(stream_id, chunk, pad_length=pad or None)
            data = data[len(chunk):]
        s['pending'] = data
        if not data:
            self.conn.end_stream(stream_id)

    def pump(self, until, credit=True):
        while not until():
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError('connection closed by the proxy')
            for event in self.conn.receive_data(data):
                self.events.append(type(event).__name__)
                s = self.streams.get(getattr(event, 'stream_id', 0))
                if isinstance(event, h2.events.ResponseReceived):
                    s['headers'] = dict(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    s['body'] += event.data
                    if credit:
                        self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.TrailersReceived):
                    s['trailers'] = dict(event.headers)
                elif isinstance(event, h2.events.StreamEnded):
                    s['ended'] = True
                elif isinstance(event, h2.events.StreamReset):
                    s['reset'] = event.error_code
                elif isinstance(event, h2.events.WindowUpdated):
                    for stream_id in self.streams:
                        if self.streams[stream_id]['pending']:
                            self.send_pending(stream_id)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    raise RuntimeError(f'GOAWAY from the proxy: {event.error_code} {event.additional_data!r}')
            self.flush()

    def done(self, *ids):
        return lambda: all(self.streams[i]['ended'] or self.streams[i]['reset'] is not None for i in ids)


def run_client(port, authority):
    results = {}
    authority = authority.encode()

    # 1. Twenty concurrent uploads (padded DATA among them), echoed whole, with flow control on both sides.
    c = Client(port, authority)
    bodies = {c.request(b'/echo', pattern(1000 + i * 9973, i), extra=[(b'x-n', str(i).encode())]): pattern(1000 + i * 9973, i) for i in range(20)}
    c.pump(c.done(*bodies))
    results['echo'] = all(bytes(c.streams[i]['body']) == b and c.streams[i]['headers'][b':status'] == b'200' for i, b in bodies.items())
    results['echoSeen'] = c.streams[next(iter(bodies))]['headers'][b'x-seen'].decode()

    # 2. PING answered with the same payload.
    c.conn.ping(b'pillion!')
    c.flush()
    c.pump(lambda: 'PingAckReceived' in c.events)
    results['ping'] = True

    # 3. Trailers (gRPC shape), a header block past one frame (CONTINUATION) and PRIORITY in HEADERS.
    t = c.request(b'/trailers', priority=True)
    long = c.request(b'/long-header')
    c.pump(c.done(t, long))
    results['trailers'] = {k.decode(): v.decode() for k, v in (c.streams[t]['trailers'] or {}).items()}
    results['longHeader'] = len((c.streams[long]['headers'] or {}).get(b'x-long', b''))

    # 4. A response cut by our RST_STREAM, then the connection serves on.
    big = c.request(b'/big')
    c.pump(lambda: len(c.streams[big]['body']) > 0)
    c.conn.reset_stream(big, error_code=8)
    c.flush()
    after = c.request(b'/echo', b'after')
    c.pump(c.done(after))
    results['afterReset'] = bytes(c.streams[after]['body']).decode()
    c.conn.close_connection()
    c.flush()
    c.sock.close()

    # 5. A client with a 1 KiB stream window and no dynamic table: the proxy sends no more than the window allows
    #    (python-h2 raises FlowControlError otherwise) and indexes nothing (it would fail to decode otherwise).
    small = Client(port, authority, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1024, h2.settings.SettingCodes.HEADER_TABLE_SIZE: 0})
    small.pump(lambda: 'RemoteSettingsChanged' in small.events)
    ids = [small.request(b'/big') for _ in range(3)]
    small.pump(small.done(*ids))
    results['smallWindow'] = all(bytes(small.streams[i]['body']) == pattern(BIG, 7) for i in ids)
    small.sock.close()

    print(json.dumps(results), flush=True)


if __name__ == '__main__':
    if sys.argv[1] == 'server':
        serve()
    else:
        run_client(int(sys.argv[2]), sys.argv[3])
    os._exit(0)

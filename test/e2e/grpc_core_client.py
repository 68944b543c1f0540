"""gRPC C-core (Debian's python3-grpcio) as an independent gRPC client through the proxy, for
test/e2e/h2-independent-peer.test.ts. Messages are raw protobuf bytes of test/fixtures/echo.proto's Msg
(field 1, a string), so no generated code is needed.

  grpc_core_client.py PORT AUTHORITY   prints one JSON line of results
"""
import json
import sys
from concurrent import futures

import grpc


def encode(text):
    data = text.encode()
    n = len(data)
    out = bytearray(b'\x0a')
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out) + data


def decode(msg):
    assert msg[0] == 0x0A, msg[:4]
    n, shift, i = 0, 0, 1
    while True:
        b = msg[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            break
    return msg[i:i + n].decode()


def main(port, authority):
    results = {}
    channel = grpc.insecure_channel(f'127.0.0.1:{port}', options=[('grpc.default_authority', authority)])
    unary = channel.unary_unary('/pillion.test.Echo/Unary')
    chat = channel.stream_stream('/pillion.test.Echo/Chat')

    # 200 concurrent unary calls on the channel's one connection.
    calls = [unary.future(encode(f'm{i}'), timeout=20) for i in range(200)]
    results['unary'] = all(decode(c.result()) == f'echo:m{i}' for i, c in enumerate(calls))

    # Response metadata (headers) and status from trailers.
    reply, call = unary.with_call(encode('md'), timeout=10)
    results['metadata'] = dict(call.initial_metadata()).get('x-served-by')
    try:
        unary(encode('fail'), timeout=10)
        results['failStatus'] = 'OK'
    except grpc.RpcError as err:
        results['failStatus'] = f'{err.code().name}:{err.details()}'

    # A 3 MiB message: many DATA frames and window updates each way.
    big = 'x' * (3 * 1024 * 1024)
    results['bigLength'] = len(decode(unary(encode(big), timeout=20)))

    # Bidirectional streaming, in order, with the client's half-close ending the call.
    replies = [decode(m) for m in chat(iter([encode(f'c{i}') for i in range(100)]), timeout=20)]
    results['chat'] = replies == [f'echo:c{i}' for i in range(100)]

    # A method the server does not have: its UNIMPLEMENTED passes through.
    try:
        channel.unary_unary('/pillion.test.Echo/Nope')(encode('x'), timeout=10)
        results['unknownMethod'] = 'OK'
    except grpc.RpcError as err:
        results['unknownMethod'] = err.code().name

    channel.close()
    print(json.dumps(results), flush=True)


if __name__ == '__main__':
    main(int(sys.argv[1]), sys.argv[2])

// V8 flags every Pillion process runs with (also in the `pillion` executable's shebang). A proxy's garbage is
// almost all short-lived per-request objects: a 2 MiB young generation keeps scavenges cheap and cuts ~25 MiB
// of resident memory under load at equal throughput (measured with bench/). V8 reads it only at start-up.
// --single-threaded-gc: a scavenge here frees almost everything, so V8's parallel helpers have little to do; on a
// busy machine (a sidecar shares its node's cores) the main thread waited for helpers that had no core: median
// scavenge 1.1 - 1.3 ms under wrk on 2 shared cores, 0.45 ms on the main thread alone, GC time per 8 s 400 -> 240 ms.
// --v8-pool-size=1: with GC on the main thread, V8's worker threads only compile in the background; one is
// enough, and each of the default four kept a malloc arena of its own (RSS under load 76 -> 72 MiB).
// grpc-js sends the dialed host as TLS SNI even when it is an IP (`--xds 127.0.0.1:15012`); Node drops such a
// name as RFC 6066 says, but prints DEP0123 on every xDS and CA connection, which buried the real last words of a
// sidecar in the demo's exit reports.
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--single-threaded-gc', '--v8-pool-size=1', '--disable-warning=DEP0123'];

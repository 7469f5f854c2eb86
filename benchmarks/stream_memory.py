"""Stream a large generated body through AsyncWorkerStreamIterator and
report throughput and the server's peak RSS growth.

Usage: python benchmarks/stream_memory.py [--mib 1024] [--json FILE]

A fresh Zope (waitress, threads = 2) streams ``--mib`` MiB produced by a
generator in 64 KiB chunks; the client reads it over a real socket and
checks every byte. RSS is sampled from /proc every 20 ms. A stream that is
not intact (not 200, short, or other bytes), or an instance that died,
fails the run (exit status 1).
"""

import argparse
import hashlib
import http.client
import pathlib
import sys
import tempfile
import time


sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
from common import Checks, RssSampler, command_line, machine  # noqa: E402
from futures_testapp.views import pattern  # noqa: E402
from zopeinstance import ZopeInstance  # noqa: E402


CHUNK = 65536


def run(mib=1024, threads=2):
    """Stream ``mib`` MiB once and check it. Returns the report (plain
    data); raises BenchmarkFailed, with the report, when the stream was not
    intact or the instance died."""
    checks = Checks()
    size = mib * 2**20
    report = {"machine": machine(),
              "parameters": {"mib": mib, "chunk_bytes": CHUNK, "threads": threads}}
    with checks.guard(report), tempfile.TemporaryDirectory() as tmp:
        zope = ZopeInstance(pathlib.Path(tmp) / "zope", threads=threads
                            ).create().start()
        with checks.running(zope, "stream"):
            # Warm up the view and the stream machinery, then measure.
            status, _, body = zope.request("/@@stream?kind=gen&size=1048576")
            checks.expect(status == 200 and body == b"".join(pattern(2**20, CHUNK)),
                          f"warm-up stream answered {status}, {len(body)} bytes")
            expected = hashlib.sha256()
            for piece in pattern(size, CHUNK):
                expected.update(piece)
            baseline = zope.rss()
            with RssSampler(zope) as sampler:
                connection = http.client.HTTPConnection(*zope.address, timeout=120)
                try:
                    start = time.monotonic()
                    connection.request(
                        "GET", f"/@@stream?kind=gen&size={size}&chunk={CHUNK}")
                    response = connection.getresponse()
                    digest, received = hashlib.sha256(), 0
                    while True:
                        data = response.read(1 << 20)
                        if not data:
                            break
                        digest.update(data)
                        received += len(data)
                    elapsed = time.monotonic() - start
                finally:
                    connection.close()
            checks.expect(sampler.error is None,
                          f"sampling the server's RSS failed: {sampler.error}")
        intact = (response.status == 200 and received == size
                  and digest.hexdigest() == expected.hexdigest())
        checks.expect(intact, f"the stream was not intact: HTTP {response.status}, "
                              f"{received} of {size} bytes, sha256 "
                              f"{'matches' if digest.hexdigest() == expected.hexdigest() else 'differs'}")
        report.update({
            "status": response.status,
            "bytes": received,
            "intact": intact,
            "seconds": round(elapsed, 2),
            "mib_per_s": round(received / elapsed / 2**20, 1),
            "rss_baseline_mib": round(baseline / 2**20, 1),
            "rss_peak_mib": round(sampler.peak / 2**20, 1),
            "rss_growth_mib": round((sampler.peak - baseline) / 2**20, 1),
        })
    return checks.finish(report)


def summary(report):
    return (f"streamed {report['bytes'] / 2**20:.0f} MiB in {report['seconds']} s "
            f"({report['mib_per_s']} MiB/s), intact: {report['intact']}; server RSS "
            f"{report['rss_baseline_mib']} MiB -> peak {report['rss_peak_mib']} MiB "
            f"(growth {report['rss_growth_mib']} MiB)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--json", help="also write the report to this file")
    args = parser.parse_args(argv)
    return command_line(run, summary, args.json, mib=args.mib)


if __name__ == "__main__":
    main()

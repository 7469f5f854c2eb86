"""Stream a large generated body through AsyncWorkerStreamIterator and
report throughput and the server's peak RSS growth.

Usage: python benchmarks/stream_memory.py [--mib 1024] [--json FILE]

A fresh Zope (waitress, threads = 2) streams ``--mib`` MiB produced by a
generator in 64 KiB chunks; the client reads it over a real socket and
checks every byte. RSS is sampled from /proc every 20 ms.
"""

import argparse
import hashlib
import http.client
import json
import pathlib
import platform
import sys
import tempfile
import threading
import time


sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
from futures_testapp.views import pattern  # noqa: E402
from zopeinstance import ZopeInstance  # noqa: E402


def sample_rss(zope, stop, peak):
    while not stop.wait(0.02):
        peak[0] = max(peak[0], zope.rss())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    size = args.mib * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        zope = ZopeInstance(pathlib.Path(tmp) / "zope", threads=2).create().start()
        try:
            # Warm up the view and the stream machinery, then measure.
            zope.request("/@@stream?kind=gen&size=1048576")
            baseline = zope.rss()
            peak, stop = [baseline], threading.Event()
            sampler = threading.Thread(target=sample_rss, args=(zope, stop, peak),
                                       name="rss-sampler", daemon=True)
            sampler.start()
            expected = hashlib.sha256()
            for piece in pattern(size, 65536):
                expected.update(piece)
            connection = http.client.HTTPConnection(*zope.address, timeout=120)
            start = time.monotonic()
            connection.request("GET", f"/@@stream?kind=gen&size={size}&chunk=65536")
            response = connection.getresponse()
            digest, received = hashlib.sha256(), 0
            while True:
                data = response.read(1 << 20)
                if not data:
                    break
                digest.update(data)
                received += len(data)
            elapsed = time.monotonic() - start
            connection.close()
            stop.set()
            sampler.join(5)
        finally:
            zope.stop()
    report = {
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "bytes": received,
        "intact": received == size and digest.hexdigest() == expected.hexdigest(),
        "seconds": round(elapsed, 2),
        "mib_per_s": round(received / elapsed / 2**20, 1),
        "rss_baseline_mib": round(baseline / 2**20, 1),
        "rss_peak_mib": round(peak[0] / 2**20, 1),
        "rss_growth_mib": round((peak[0] - baseline) / 2**20, 1),
    }
    print(f"streamed {received / 2**20:.0f} MiB in {report['seconds']} s "
          f"({report['mib_per_s']} MiB/s), intact: {report['intact']}; server RSS "
          f"{report['rss_baseline_mib']} MiB -> peak {report['rss_peak_mib']} MiB "
          f"(growth {report['rss_growth_mib']} MiB)")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=2))
    if not report["intact"]:
        sys.exit("the stream was not intact")
    return report


if __name__ == "__main__":
    main()

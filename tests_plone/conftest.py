import faulthandler
import pathlib
import sys

faulthandler.enable(file=sys.stderr, all_threads=True)

HERE = pathlib.Path(__file__).resolve().parent
# The harness (zopeinstance, rawhttp, slow_upstream) lives in tests/.
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

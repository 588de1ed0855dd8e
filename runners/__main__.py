import sys

if sys.argv[1:2] == ["reference"]:  # one BLAS thread, set before numpy loads (runners.reference)
    from runners.reference import pin_blas_threads

    pin_blas_threads()

from runners.cli import main, reserve_stdout  # noqa: E402

# stdout is the runner's alone (its result JSON): anything else writing to it goes to stderr
_out = reserve_stdout()
try:
    _code = main(out=_out)
finally:
    _out.flush()
sys.exit(_code)

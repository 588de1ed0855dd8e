import sys

if sys.argv[1:2] == ["reference"]:  # one BLAS thread, set before numpy loads (runners.reference)
    from runners.reference import pin_blas_threads

    pin_blas_threads()

from runners.cli import main  # noqa: E402

sys.exit(main())

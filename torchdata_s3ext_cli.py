"""The ``torchdata-s3ext`` command as installed. ``--help``, ``--version`` and a mistake in the options are answered
by the command's own modules alone, before the package's root is imported (it imports torch, to register the
datapipes, which takes seconds); a command that runs then gets the whole package."""
import importlib.util
import sys
from typing import List, Optional

_PACKAGE = "torchdata_s3ext"


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command of ``argv`` (default: the process's arguments); its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if _PACKAGE not in sys.modules:
        _check_alone(argv)  # SystemExit after --help or --version, or naming a mistake
    from torchdata_s3ext.tools.cli import main as run

    return run(argv)


def _check_alone(argv: List[str]) -> None:
    """Parse and check ``argv`` with the package's root set aside (a bare module stands in for it), then forget
    every module of the package that loaded, so that the command imports the package whole."""
    spec = importlib.util.find_spec(_PACKAGE)
    sys.modules[_PACKAGE] = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    try:
        from torchdata_s3ext.tools.cli import checked_arguments

        checked_arguments(argv)
    finally:
        for name in [name for name in sys.modules if name == _PACKAGE or name.startswith(_PACKAGE + ".")]:
            del sys.modules[name]


if __name__ == "__main__":
    sys.exit(main())

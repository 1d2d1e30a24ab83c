import sys

if __name__ == "__main__":  # not when a spawned study worker re-imports the main module
    from .cli import main

    sys.exit(main())

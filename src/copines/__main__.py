"""`python -m copines`: the same commands as the `copines` script."""

from copines.cli import main

main()

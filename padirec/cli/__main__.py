"""`python -m padirec.cli ...` = `padirec ...`."""

from padirec.cli.main import main

main()

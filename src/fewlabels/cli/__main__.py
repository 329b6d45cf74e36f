"""``python -m fewlabels.cli`` (and ``torchrun -m fewlabels.cli``) runs the command line."""

from fewlabels.cli import main

main()

"""`python -m cnnlab` (and `torchrun -m cnnlab train ...`) run the same CLI as the `cnnlab` command."""

from cnnlab.cli import main

if __name__ == "__main__":
    main()

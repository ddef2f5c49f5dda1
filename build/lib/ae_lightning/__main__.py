"""``python -m ae_lightning …`` is ``ae-lightning …`` (also what torchrun launches)."""

from ae_lightning.cli import main

if __name__ == "__main__":
    main()

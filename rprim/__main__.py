"""``python -m rprim`` (also what ``torchrun -m rprim train`` runs)."""

from rprim.cli import main

if __name__ == "__main__":
    main()

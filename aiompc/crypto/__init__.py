"""Cryptographic math with no I/O: the PRG, hashing, and the lattice (HE) core."""

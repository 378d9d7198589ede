"""Compiled hot loops (no I/O): bit packing, and the numeric kernels of the HE and OT layers.

Each kernel has one implementation and a test against a plain reference (``tests/kernels``).
"""

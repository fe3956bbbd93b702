"""Primitive probes (``python -m nnbench micro``): the reads and writes every methodology is built
from, one module kind at a time, judged per backend by the same oracle as the cells."""

"""memrec: memory-augmented sequential recommendation, evaluated honestly."""
__version__ = "0.1.0"

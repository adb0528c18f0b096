"""The stream protocol (``memrec stream``): memory that keeps learning between visits, measured on the time line.

See :mod:`memrec.stream.protocol` (cut and replay), :mod:`memrec.stream.policies` (frozen, neighbours,
retrain), :mod:`memrec.stream.report` and :mod:`memrec.stream.run`; docs/stream.md.
"""
from memrec.stream.protocol import Cut, LeakError, StreamError, StreamEvent, cut_dataset, replay
from memrec.stream.run import run_stream

__all__ = ["Cut", "LeakError", "StreamError", "StreamEvent", "cut_dataset", "replay", "run_stream"]

"""Export a trained model's scorer (sequence encoder and item table) to ONNX or torch.export.

The exported program maps ``history`` (B, L) int64, each row a user's last ``L = max_len`` items as
item indices, right-padded with 0, and ``lengths`` (B,) int64, the real items per row, to ``scores``
(B, N + 1) float32: one score per item index, column 0 being padding. The batch size is free. A JSON
file beside it (``PATH.json``) holds what a server needs besides: the item id of each index,
``max_len``, the input and output names. Serving it takes onnxruntime and numpy only (docs/scale.md).

Exported are the model's own scores (``memory="off"``): a neighbour memory (a search over stored
training positions) is not part of the program; the JSON says whether the run used one. Models whose
scores read per-user state (RAMRec's bank, UR4Rec-MoE's memory) are refused; BSARec exports as torch
only (the ONNX exporter does not decompose its Fourier filter).

Example (``memrec export RUN --output model.onnx`` does the same):
    >>> export_format(Path("model.onnx"), None), export_format(Path("model.pt2"), None)
    ('onnx', 'torch')

    ``report = export_run("runs/sasrec-ml-100k", "model.onnx")`` writes ``model.onnx`` and
    ``model.onnx.json``; ``report["check"]`` compares the export with eager scores.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from memrec.data.batching import make_eval_batch
from memrec.errors import MemrecError
from memrec.models import SequentialRecommender
from memrec.models.base import masked_topk

FORMATS = {"onnx": ".onnx", "torch": ".pt2"}
TOLERANCE = 1e-4  # largest score difference from eager accepted (float32 kernels differ in rounding)


class ExportError(MemrecError, ValueError):
    """A model, format or path that cannot be exported as asked."""


class Scorer(nn.Module):
    """The exported function: history (B, L) int64, lengths (B,) int64 -> scores (B, N + 1) float32."""

    def __init__(self, model: SequentialRecommender):
        super().__init__()
        self.model = model

    def forward(self, history: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        hidden = self.model.encode_positions(history)  # (B, L, d)
        last = (lengths - 1).clamp(min=0)[:, None, None].expand(-1, 1, hidden.size(2))  # (B, 1, d)
        return hidden.gather(1, last).squeeze(1) @ self.model.item_embeddings().T  # (B, d) @ (d, N + 1)


def export_format(output: Path, format: str | None) -> str:
    """The format asked for, or read from ``output``'s suffix; a suffix that disagrees is refused."""
    by_suffix = {suffix: name for name, suffix in FORMATS.items()}.get(output.suffix)
    if format is not None and format not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    if format is None and by_suffix is None:
        raise ExportError(f"--output {output}: expected a .onnx or .pt2 file (or give --format onnx|torch)")
    if format is not None and by_suffix is not None and by_suffix != format:
        raise ExportError(f"--output {output} has the suffix of {by_suffix}, not of --format {format}")
    return format or by_suffix


def export_model(model: SequentialRecommender, output: Path, format: str) -> None:
    """Write ``model``'s :class:`Scorer` to ``output`` as ONNX (torch.onnx, dynamo) or a torch.export program."""
    if type(model).scores_and_states is not SequentialRecommender.scores_and_states:
        raise ExportError(f"{model.name} scores with per-user state beside the sequence: only models scoring a history alone "
                          "(sasrec, gru4rec; bsarec as torch) are exported")
    scorer = Scorer(model).eval()
    history = torch.zeros(2, model.max_len, dtype=torch.int64)  # an example input; the batch size stays free
    history[0, :2], history[1, :1] = torch.tensor([1, min(2, model.num_items)]), 1
    lengths = torch.tensor([2, 1])
    batch = torch.export.Dim("batch", min=1)
    shapes = {"history": {0: batch}, "lengths": {0: batch}}
    try:
        if format == "torch":
            torch.export.save(torch.export.export(scorer, (history, lengths), dynamic_shapes=shapes), str(output))
        else:
            torch.onnx.export(scorer, (history, lengths), str(output), dynamo=True, input_names=["history", "lengths"],
                              output_names=["scores"], dynamic_shapes=shapes, verbose=False)
    except ImportError as exc:
        raise ExportError(f"ONNX export needs the export extra ({exc.name} is missing): pip install 'memrec[export]'") from None
    except Exception as exc:  # a model torch.export cannot trace
        other = " (try --format torch)" if format == "onnx" else ""
        raise ExportError(f"{model.name} could not be exported as {format}{other}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc


def load_exported(path: Path, format: str):
    """A function ``(history, lengths) numpy -> scores numpy`` running the exported program (onnxruntime or torch)."""
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda history, lengths: session.run(["scores"], {"history": history, "lengths": lengths})[0]
    program = torch.export.load(str(path)).module()
    return lambda history, lengths: program(torch.from_numpy(history), torch.from_numpy(lengths)).detach().numpy()


def check_export(model: SequentialRecommender, run, evalset, max_len: int, users: int = 256, seed: int = 0) -> dict:
    """Compare the exported ``run`` with eager ``model.score_all`` (memory off) on ``users`` sampled test
    users: the largest score difference, the share of users whose top 10 (history excluded) is
    identical, and whether every top 10 is the same up to items tied within the tolerance."""
    rows = np.sort(np.random.default_rng(seed).choice(len(evalset), size=min(users, len(evalset)), replace=False))
    batch = make_eval_batch(evalset.users[rows], [evalset.histories[i] for i in rows], evalset.targets[rows], max_len)
    with torch.inference_mode():
        eager = model.score_all(batch)  # (B, N + 1)
    exported = torch.from_numpy(run(batch.history.numpy(), batch.lengths.numpy()))
    seen = (batch.seen_rows, batch.seen_items)
    top_eager, top_exported = _top10(eager, seen), _top10(exported, seen)  # (B, 10) each
    diff = float((exported - eager).abs().max())
    # items may swap places where eager scores differ by less than the rounding: the exported top 10
    # must hold items whose eager scores are those of eager's top 10, within the tolerance
    swapped = (eager.gather(1, top_exported) - eager.gather(1, top_eager)).abs().max()
    same = (top_eager == top_exported).all(dim=1)  # (B,)
    return {"users": len(rows), "max_abs_diff": diff, "tolerance": TOLERANCE, "top10_identical_users": float(same.float().mean()),
            "top10_equal": bool(swapped <= TOLERANCE), "equal": diff <= TOLERANCE and bool(swapped <= TOLERANCE)}


def _top10(scores: torch.Tensor, seen) -> torch.Tensor:  # (B, N + 1) -> (B, 10) item indices, history excluded
    return masked_topk(scores.clone(), 10, seen)[0]


def export_run(path: str | Path, output: str | Path, format: str | None = None, users: int = 256, data_dir: str | None = None) -> dict:
    """Export the run (folder or checkpoint) at ``path`` to ``output`` (and ``output.json``), checked
    against eager scores on sampled test users (:func:`check_export`); an export that differs is an error."""
    from memrec.api import load

    output = Path(output)
    format = export_format(output, format)
    rec = load(path, data_dir=data_dir)
    model = rec.model.eval()
    used_memory = model.neighbours.active
    model.neighbours.set(k=0, temperature=1.0, weight=0.0)  # the model's own scores: the memory is not exported
    output.parent.mkdir(parents=True, exist_ok=True)
    export_model(model, output, format)
    check = check_export(model, load_exported(output, format), rec.split.test, rec.config.data.max_len, users)
    if not check["equal"]:
        raise ExportError(f"the exported scores differ from eager ones: {check}")
    meta = {"format": format, "model": rec.config.model, "dataset": rec.dataset.name, "max_len": rec.config.data.max_len,
            "num_items": model.num_items, "inputs": {"history": "(B, max_len) int64: last max_len item indices, right-padded with 0",
                                                     "lengths": "(B,) int64: real items per row"},
            "outputs": {"scores": "(B, num_items + 1) float32: column 0 is padding"},
            "neighbour_memory": "used by the run, not exported: these are the model's own scores" if used_memory else "none",
            "item_ids": list(rec.dataset.item_ids)}
    Path(str(output) + ".json").write_text(json.dumps(meta))
    return {"output": str(output), "metadata": str(output) + ".json", "format": format, "model": rec.config.model, "check": check}

"""Does the neighbour grid's top weight (0.7) cap the gain? Re-choose the neighbour memory of a trained
run on validation with weights up to 0.9 (k 128 / 512, temperature 0.3, decay 0.5: the region every
run chose). Validation only; the checkpoint is not changed.

    OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/neighbour_weights.py runs/sasrec-nb-beauty-42
"""
import argparse
import json
from pathlib import Path

from memrec.config import NeighbourConfig
from memrec.data import load_dataset, split_dataset
from memrec.memory.neighbours import build_neighbours
from memrec.train.checkpoint import load_checkpoint

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run folder trained with --memory neighbours")
    args = parser.parse_args()
    ckpt = load_checkpoint(Path(args.run) / "checkpoint.pt")
    split = split_dataset(load_dataset(ckpt.config.data))
    config = NeighbourConfig(enabled=True, ks=(128, 512), temperatures=(0.3,), weights=(0.5, 0.7, 0.8, 0.9), decays=(0.5,))
    report = build_neighbours(ckpt.model, split, ckpt.model.max_len, config)["neighbour_memory"]
    rows = [{"k": r["k"], "weight": r["weight"], "valid_ndcg@10": round(r["ndcg@10"], 5), "gain_low": round(r["gain_low"], 5),
             "chosen": r["chosen"]} for r in report["grid"]]
    out = {"command": f"OMP_NUM_THREADS=1 MEMREC_DATA_DIR=../shared/data python benchmarks/neighbour_weights.py {args.run}",
           "run": args.run, "rows": rows}
    (RESULTS / "neighbour-weights.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

"""memrec export: SASRec trained on ML-100K, as ONNX and torch.export, equal to eager scores; served without memrec."""
import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from memrec.api import train
from memrec.cli import main
from memrec.export import ExportError, export_format, export_model
from memrec.models import build_model

DOCS = Path(__file__).resolve().parents[1] / "docs" / "export.md"


@pytest.fixture(scope="module")
def run(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "run"
    train("sasrec", "ml-100k", out, data_dir=str(shared_data), frozen=False, log=None, epochs=1, max_len=20, hidden_size=16,
          num_layers=1, train_windows="last")
    return out


def export(run, path: Path) -> dict:
    """``memrec export RUN --output PATH``'s report (it checks the export against eager scores on 128 test users)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["export", str(run), "--output", str(path), "--check-users", "128"]) == 0
    return json.loads(printed.getvalue())


@pytest.fixture(scope="module")
def onnx_file(run):
    path = run.parent / "model.onnx"
    return path, export(run, path)


def test_export_scores_as_eager_on_sampled_users(run, onnx_file, tmp_path):
    for path, report in (onnx_file, (tmp_path / "model.pt2", export(run, tmp_path / "model.pt2"))):
        check = report["check"]
        assert report["format"] == {".onnx": "onnx", ".pt2": "torch"}[path.suffix]
        assert check["users"] == 128 and check["top10_equal"] and check["max_abs_diff"] <= 1e-4
        meta = json.loads(Path(str(path) + ".json").read_text())
        assert meta["max_len"] == 20 and len(meta["item_ids"]) == meta["num_items"] + 1 == 1683


def test_the_documented_server_needs_no_memrec_and_ranks_as_memrec(run, onnx_file):
    """The docs' onnxruntime + numpy example, run in a fresh interpreter, lists what memrec recommends."""
    code = re.search(r"<!-- export-example -->\n```python\n(.*?)```", DOCS.read_text(), re.S).group(1)
    from memrec.api import load

    rec = load(run, memory="off")
    users = ["196", "1", "405"]
    histories = [[rec.dataset.item_ids[i] for i in rec.dataset.sequence(u)] for u in users]  # item ids, time order
    script = code + "\nimport sys\nprint(json.dumps([recommend(h) for h in json.load(sys.stdin)]))\nassert 'memrec' not in sys.modules and 'torch' not in sys.modules\n"
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(histories), capture_output=True, text=True, cwd=onnx_file[0].parent, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    served = json.loads(done.stdout)
    assert served == [[r.item for r in rec.recommend(user=u, k=10)] for u in users]


def test_models_with_per_user_state_and_bad_paths_are_refused(tmp_path):
    with pytest.raises(ExportError, match="per-user state"):
        export_model(build_model("ramrec", 20, 8), tmp_path / "m.onnx", "onnx")
    with pytest.raises(ExportError, match=r"\.onnx or \.pt2"):
        export_format(tmp_path / "m.bin", None)
    with pytest.raises(ExportError, match="suffix of torch"):
        export_format(tmp_path / "m.pt2", "onnx")
    assert main(["export", str(tmp_path / "nowhere"), "--output", str(tmp_path / "m.txt")]) == 2

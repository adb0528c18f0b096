#!/usr/bin/env bash
# Create (once) a private virtual environment with RecBole 1.2.1 for the peer benchmark.
# See /work/shared/peers/recbole.md for why the versions are pinned:
#   - torch 2.13.0 CPU wheel (installed first so pip never pulls a CUDA build),
#   - numpy<2 (RecBole uses removed aliases such as np.float_),
#   - pandas 2.2.3 (pandas 3 silently ignores RecBole's chained fillna(inplace=True)).
# Idempotent: re-running only checks the imports. Prints the venv's python at the end.
set -euo pipefail

VENV="${RECBOLE_VENV:-$HOME/.cache/memrec/recbole-venv}"
PY="$VENV/bin/python"
BASE_PY="${PYTHON:-python3}"

if [ ! -x "$PY" ]; then
    mkdir -p "$(dirname "$VENV")"
    "$BASE_PY" -m venv "$VENV"
fi

check_import() {
    "$PY" - <<'PYEOF' >/dev/null 2>&1
import torch, numpy, pandas
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert not torch.version.cuda, "CUDA build of torch"
assert int(numpy.__version__.split(".")[0]) < 2, numpy.__version__
assert pandas.__version__ == "2.2.3", pandas.__version__
import recbole
assert recbole.__version__ == "1.2.1", recbole.__version__
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed
get_model("SASRec"); get_model("GRU4Rec")
PYEOF
}

if ! check_import; then
    "$PY" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    "$PY" -m pip install "torch==2.13.0"
    "$PY" -m pip install "recbole==1.2.1" "numpy<2" "torch==2.13.0"
    "$PY" -m pip install "pandas==2.2.3" "numpy<2" "torch==2.13.0"
    if ! check_import; then
        # Packages RecBole imports at module load time but does not always declare.
        "$PY" -m pip install "numpy<2" "torch==2.13.0" "pandas==2.2.3" \
            ray thop texttable tensorboard colorlog colorama scipy psutil
    fi
    if ! check_import; then
        echo "RecBole import check failed in $VENV; traceback:" >&2
        "$PY" -c "from recbole.utils import get_model; get_model('SASRec')" >&2 || true
        exit 1
    fi
fi

echo "$PY"

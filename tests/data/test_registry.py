"""Resolution of registered names and the official download (against a real local HTTP server)."""
import http.server
import io
import threading
import zipfile

import pytest

from memrec.config import DataConfig
from memrec.data import load_dataset, registry
from memrec.errors import DatasetNotFoundError


def test_data_dir_and_environment_are_searched(shared_data, monkeypatch, tmp_path):
    monkeypatch.setenv("MEMREC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("MEMREC_DATA_DIR", str(shared_data))
    assert load_dataset(DataConfig(dataset="lastfm", download=False)).num_users == 1090
    monkeypatch.delenv("MEMREC_DATA_DIR")
    assert load_dataset(DataConfig(dataset="lastfm", data_dir=str(shared_data), download=False)).num_users == 1090


def _grouplens_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t10\t5\t100\n1\t20\t4\t50\n2\t10\t3\t70\n2\t20\t3\t80\n")
        zf.writestr("ml-100k/u.genre", "Action|0\nComedy|1\n")
        zf.writestr("ml-100k/u.item", "10|Heat (1995)|||u|1|0\n20|Babe (1995)|||u|0|1\n")
    return buffer.getvalue()


@pytest.fixture
def zip_server():
    body = _grouplens_zip()
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/ml-100k.zip", hits
    server.shutdown()


def test_download_is_fetched_once_and_cached(zip_server, monkeypatch, tmp_path):
    url, hits = zip_server
    monkeypatch.delenv("MEMREC_DATA_DIR", raising=False)
    monkeypatch.setenv("MEMREC_CACHE_DIR", str(tmp_path))
    spec = registry.REGISTRY["ml-100k"]
    monkeypatch.setitem(registry.REGISTRY, "ml-100k", registry.DatasetSpec(spec.name, spec.description, spec.paths, url, "ml-100k"))
    ds = load_dataset(DataConfig(dataset="ml-100k", data_dir=str(tmp_path / "empty")))
    assert ds.num_users == 2 and ds.num_interactions == 4 and ds.items.text[ds.item_index("20")] == "Babe (1995). Comedy"
    load_dataset(DataConfig(dataset="ml-100k", data_dir=str(tmp_path / "empty")))
    assert len(hits) == 1  # the second load reads the cache
    assert (tmp_path / "data" / "ml-100k" / "u.data").exists()


def test_offline_download_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("MEMREC_DATA_DIR", raising=False)
    monkeypatch.setenv("MEMREC_CACHE_DIR", str(tmp_path))
    spec = registry.REGISTRY["ml-100k"]
    dead = "http://127.0.0.1:9/ml-100k.zip"  # nothing listens on the discard port
    monkeypatch.setitem(registry.REGISTRY, "ml-100k", registry.DatasetSpec(spec.name, spec.description, spec.paths, dead, "ml-100k"))
    with pytest.raises(DatasetNotFoundError, match=r"download from http://127.0.0.1:9/ml-100k.zip failed .*If you are offline"):
        load_dataset(DataConfig(dataset="ml-100k", data_dir=str(tmp_path)))
    with pytest.raises(DatasetNotFoundError, match="allow the download"):
        load_dataset(DataConfig(dataset="ml-100k", data_dir=str(tmp_path), download=False))
    assert not (tmp_path / "data" / "ml-100k").exists()  # nothing half-written is left

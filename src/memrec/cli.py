"""The ``memrec`` command line: datasets, train, evaluate, recommend, compare, config. Training,
loading and recommending go through the Python API (:mod:`memrec.api`), so both answer alike.

Example:
    memrec datasets
    memrec train --model sasrec --dataset ml-100k --output runs/sasrec-ml-100k --train.epochs=50
    memrec train --model sasrec --dataset ratings.csv --columns user=member,item=sku --output runs/mine
    memrec evaluate runs/sasrec-ml-100k/checkpoint.pt
    memrec recommend runs/sasrec-ml-100k/checkpoint.pt --user 196 -k 10 --json
    memrec config show sasrec
    memrec compare runs/sasrec-ml-100k runs/gru4rec-ml-100k --chart compare.png
    memrec serve runs/sasrec-ml-100k/checkpoint.pt --store state.db --port 8000
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from memrec.api import CONFIG_DIR, frozen_config, parse_columns  # noqa: F401 (CONFIG_DIR, frozen_config: re-exported)
from memrec.errors import MemrecError
from memrec.models import MODELS
from memrec.runtime import freeze_startup_objects, keep_freed_memory


def cmd_datasets(args) -> None:
    from memrec.config import DataConfig
    from memrec.data import REGISTRY, load_dataset

    for name in args.names or sorted(REGISTRY):
        spec = REGISTRY.get(name)
        print(f"{name}: {spec.description if spec else 'a path'}")
        if args.describe or args.names:
            try:
                ds = load_dataset(DataConfig(dataset=name, data_dir=args.data_dir, format=args.format, download=False,
                                             columns=parse_columns(args.columns)))
            except MemrecError as exc:
                if args.names:
                    raise  # a data set the user named must be there
                print(f"  not available: {exc}")
                continue
            from memrec.defaults import data_defaults, prefix_positions

            stats = {**ds.stats(), "prefix_positions": prefix_positions([len(s) for s in ds.sequences], DataConfig().max_len)}
            print("  " + ds.report())
            print("  " + json.dumps(stats))  # prefix_positions at the default max_len (docs/defaults.md)
            print("  settings for a model without a frozen config (docs/defaults.md): " + json.dumps(data_defaults(stats)))


def build_run_config(args, extra: list[str]):
    from memrec.api import run_config

    return run_config(args.model, args.dataset, config=args.config, data_dir=args.data_dir, frozen=not args.no_frozen,
                      memory=args.memory, columns=parse_columns(args.columns), overrides=extra,
                      log=lambda line: print(line, file=sys.stderr))


def cmd_train(args, extra: list[str]) -> None:
    from memrec.train import train_and_evaluate

    config = build_run_config(args, extra)
    if args.nproc is not None and "WORLD_SIZE" not in os.environ:  # not yet under torchrun: start it (docs/scale.md)
        from memrec.train.distributed import launch
        from memrec.train.run import check_output

        _require_positive("--nproc", args.nproc)
        check_output(args.output, args.overwrite)  # refused here, before any process starts
        if launch(args.nproc, args.argv):
            raise MemrecError(f"the distributed run failed (torchrun with {args.nproc} processes; each rank's error is above)")
        return
    metrics = train_and_evaluate(config, args.output, progress=None, overwrite=args.overwrite)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the run
        print(f"results in {args.output}/metrics.json (test ndcg@10 {metrics['test']['ndcg@10']:.4f})")


def cmd_tune(args, extra: list[str]) -> None:
    from memrec.tune import search_space, tune

    _require_positive("--trials", args.trials)
    args.memory = None  # the backbone is tuned; the neighbour memory chooses its own setting after training
    config = build_run_config(args, extra)
    summary = tune(config, args.output, trials=args.trials, minutes=args.minutes, space=search_space(config.model, args.space),
                   startup=args.startup, prune_from=args.prune_from, seed=args.seed, log=lambda line: print(line, file=sys.stderr))
    print(json.dumps(summary, indent=2))  # stdout: the summary alone, as JSON


def _require_positive(flag: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise MemrecError(f"{flag} must be a positive integer, got {value}")


def _load(args):
    """The checkpoint's :class:`~memrec.api.Recommender`, with the command's --dataset, --data-dir, --columns and --memory."""
    from memrec.api import load

    return load(args.checkpoint, dataset=args.dataset, data_dir=args.data_dir, columns=parse_columns(args.columns),
                memory="off" if args.memory == "off" else "as-trained")


def cmd_evaluate(args, extra) -> None:
    import time

    from memrec.train.report import format_table

    _require_positive("--batch-size", args.batch_size)
    rec = _load(args)
    rows = []
    for name in ("valid", "test"):
        tic = time.perf_counter()
        metrics = rec.evaluate(name, batch_size=args.batch_size)
        rows.append({"model": rec.config.model, "dataset": rec.dataset.name, "split": name, **metrics, "seconds": time.perf_counter() - tic})
    print(f"protocol: {rec.split.protocol}; full ranking over {rec.dataset.num_items} items")
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


def cmd_recommend(args, extra) -> None:
    _require_positive("-k", args.k)
    if args.all:
        return _recommend_all(args)
    if args.output:
        raise MemrecError("--output writes every user's top-k: give --all with it (or drop --output)")
    if (args.user is None) == (args.history is None):
        raise MemrecError("give --user U (a user of the data set), --history ITEM,ITEM,... or --all, one of them")
    rec = _load(args)
    ds = rec.dataset
    if args.history is not None:
        history = [i.strip() for i in args.history.split(",") if i.strip()]
        recs = rec.recommend(history=history, k=args.k)
    else:
        history = ds.sequence(args.user)  # everything known about the user
        recs = rec.recommend(user=args.user, k=args.k)
    if args.json:
        print(json.dumps({"user": args.user, "history_length": len(history), "items": [r.to_dict() for r in recs]}, indent=2))
        return
    print(f"top {len(recs)} for {'user ' + str(args.user) if args.user is not None else 'the given history'} ({len(history)} history items, excluded):")
    for r in recs:
        print(f"{r.rank:3d}. {r.item:<14} {r.score:9.4f}  {r.title or ds.items.text[ds.item_index(r.item)][:80]}")


def _recommend_all(args) -> None:
    from memrec.batch import output_format, recommend_all

    if args.user is not None or args.history is not None or not args.output:
        raise MemrecError("--all ranks every user of the data set into --output FILE (.parquet or .csv); drop --user / --history")
    _require_positive("--chunk", args.chunk)
    output_format(Path(args.output), args.format)  # a bad suffix is refused before the model is loaded
    report = recommend_all(_load(args), args.output, k=args.k, chunk=args.chunk, format=args.format,
                           log=lambda line: print(line, file=sys.stderr))
    print(json.dumps(report, indent=2))


def cmd_export(args, extra) -> None:
    from memrec.export import export_format, export_run

    _require_positive("--check-users", args.check_users)
    export_format(Path(args.output), args.format)  # a bad suffix or format is refused before the model is loaded
    report = export_run(args.run, args.output, args.format, users=args.check_users, data_dir=args.data_dir)
    print(json.dumps(report, indent=2))


def cmd_config(args, extra) -> None:
    from memrec.api import run_config
    from memrec.config import describe

    frozen = frozen_config(args.model, args.dataset) if args.dataset and not args.config else None
    config = run_config(args.model, args.dataset, config=args.config or frozen, frozen=False)
    source = args.config or frozen or "built-in defaults"
    rows = [("KEY", "VALUE", "MEANING")] + [(key, _shown(value), meaning) for key, value, meaning in describe(config)]
    width = max(len(k) for k, _, _ in rows), max(len(v) for _, v, _ in rows)
    print(f"# {args.model}: every key, its value ({source}) and meaning; set one with --KEY=VALUE in memrec train")
    for key, value, meaning in rows:
        print(f"{key:<{width[0]}}  {value:<{width[1]}}  {meaning}")


def _shown(value) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def cmd_compare(args, extra) -> None:
    from memrec.train.report import compare_runs

    print(compare_runs(args.runs, chart=args.chart, x=args.x))
    if args.chart:
        print(f"chart: {args.chart}")


def cmd_stream(args, extra) -> None:
    from memrec.stream import run_stream

    run_stream(args.model, args.dataset, args.output, cut=args.cut, policies=args.policies.split(","), memory=args.memory,
               data_dir=args.data_dir, overrides=extra, checkpoint=args.checkpoint, sync_every=args.sync_every,
               retrain_days=args.retrain_days, retrain_epochs=args.retrain_epochs, buckets=args.buckets, json_path=args.json,
               log=lambda line: print(line, file=sys.stderr))
    print(f"report: {Path(args.output) / 'report.json'}; plot: {Path(args.output) / 'stream.png'}")


def cmd_serve(args, extra) -> None:
    import os

    try:
        import uvicorn

        from memrec.serve.app import ServeConfig, create_app
    except ImportError as exc:
        raise MemrecError(f"memrec serve needs the serve extra ({exc.name} is missing): pip install 'memrec[serve]'") from None
    token = args.token or os.environ.get("MEMREC_SERVE_TOKEN") or None
    config = ServeConfig(checkpoint=args.checkpoint, store=args.store, token=token, reset_memories=args.reset_memories,
                         import_training_users=args.import_training_users,
                         max_body_bytes=args.max_body_bytes, worker_threads=args.worker_threads, host=args.host,
                         allowed_hosts=tuple(h for hosts in args.allowed_hosts for h in hosts.split(",") if h))
    app = create_app(config)  # loads the model and opens the store first: a version mismatch stops here
    freeze_startup_objects()
    print(f"memrec serve: {app.state.served.name} on http://{args.host}:{args.port} (store {app.state.store!r})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that ends each option's text with its default, unless the text already speaks of it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "default" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def _subparsers(parser: argparse.ArgumentParser):
    """Every parser below ``parser``, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield child
                yield from _subparsers(child)


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as installed

    try:
        return installed("memrec")
    except PackageNotFoundError:
        return "unknown (not installed)"


COLUMNS_HELP = ("ROLE=COLUMN,... for a CSV / TSV / Parquet file whose header names are not the known ones "
                "(roles: user, item, rating, time, title, categories), e.g. user=member,item=sku")


def add_run_config_arguments(p: argparse.ArgumentParser) -> None:
    """The options :func:`build_run_config` reads to make a run config (train, tune)."""
    p.add_argument("--model", help=" | ".join(sorted(MODELS)) + " (default: the config's model, else sasrec)")
    p.add_argument("--dataset", help="a registered name (see `memrec datasets`) or a path (default: the config's data set, else ml-100k)")
    p.add_argument("--data-dir", help="folder holding the registered data sets (else $MEMREC_DATA_DIR)")
    p.add_argument("--config", help="YAML config (default: the frozen config for model and data set, if any)")
    p.add_argument("--no-frozen", action="store_true", help="start from the built-in defaults, not the frozen config nor the settings read from the data (docs/defaults.md)")
    p.add_argument("--columns", help=COLUMNS_HELP)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memrec", description="Memory-augmented sequential recommendation", formatter_class=DefaultsFormatter)
    parser.add_argument("--version", action="version", version=f"memrec {version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datasets", help="list the registered data sets; describe them with --describe")
    p.add_argument("names", nargs="*", help="data set names or paths to describe")
    p.add_argument("--describe", action="store_true", help="load each data set and print its statistics")
    p.add_argument("--data-dir", help="folder holding the registered data sets (else $MEMREC_DATA_DIR)")
    p.add_argument("--format", help="atomic | atomic-split | s3rec | json | grouplens | csv | parquet | dat (default: detected from the files)")
    p.add_argument("--columns", help=COLUMNS_HELP)

    p = sub.add_parser("train", help="train and evaluate a model; extra --section.key=value override the config",
                       description="Train and evaluate a model. Further --section.key=value arguments override the config, "
                                   "e.g. --train.epochs=50 --model_config.hidden_size=64.")
    add_run_config_arguments(p)
    p.add_argument("--memory", choices=("neighbours", "off"),
                   help="neighbours: build the neighbour memory (other users' training positions) after training and use it "
                        "if its validation gain is above noise; off: none (default: as the config says; frozen RAMRec configs: neighbours)")
    p.add_argument("--output", required=True, help="run folder for metrics.json, checkpoint.pt, curve.png, logs")
    p.add_argument("--overwrite", action="store_true", help="replace the run an existing --output folder holds (default: refuse)")
    p.add_argument("--nproc", type=int, help="train in this many processes (DDP under torchrun; rank 0 writes the run; docs/scale.md)")

    for name, help_text in (("evaluate", "full-ranking evaluation of a checkpoint"), ("recommend", "top-k items for a user")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("checkpoint", help="a checkpoint.pt, or the run folder holding it")
        p.add_argument("--memory", choices=("as-trained", "off"), default="as-trained",
                       help="off: the same weights without the checkpoint's neighbour memory (default: as-trained)")
        p.add_argument("--dataset", help="override the data set path stored in the checkpoint's config")
        p.add_argument("--data-dir", help="folder holding the registered data sets (default: where the checkpoint's data was read, "
                                          "else $MEMREC_DATA_DIR)")
        p.add_argument("--columns", help=COLUMNS_HELP + " (default: the checkpoint's)")
        p.add_argument("--json", help="write the results as JSON to this file" if name == "evaluate" else
                       "print the answer as JSON: rank, item, score, title of each item",
                       **({} if name == "evaluate" else {"action": "store_true"}))
        if name == "evaluate":
            p.add_argument("--batch-size", type=int, help="users per evaluation batch; results do not depend on it (default: the config's)")
        else:
            p.add_argument("--user", help="a user id of the data set: their whole history is excluded and read")
            p.add_argument("--history", help="comma-separated item ids, instead of --user")
            p.add_argument("-k", type=int, default=10, help="how many items to list")
            p.add_argument("--all", action="store_true", help="every user of the data set, into --output, in chunks; "
                                                              "an interrupted run resumes (docs/python.md#batch)")
            p.add_argument("--output", help="with --all: the file to write, .parquet or .csv (rows: user, rank, item, score)")
            p.add_argument("--format", choices=("parquet", "csv"), help="with --all: the output format (default: from --output's suffix)")
            p.add_argument("--chunk", type=int, default=2048, help="with --all: users ranked at once (memory grows with it)")

    p = sub.add_parser("export", help="the model's scorer (encoder and item table) as ONNX or torch.export, checked against eager scores (docs/scale.md)")
    p.add_argument("run", help="a run folder of `memrec train`, or its checkpoint.pt")
    p.add_argument("--output", required=True, help="the file to write: .onnx or .pt2 (item ids and shapes go to OUTPUT.json)")
    p.add_argument("--format", choices=("onnx", "torch"), help="onnx (needs memrec[export]) or torch (torch.export) (default: from --output's suffix)")
    p.add_argument("--check-users", type=int, default=256, help="test users whose exported scores are compared with eager ones")
    p.add_argument("--data-dir", help="folder holding the registered data sets (default: where the checkpoint's data was read, else $MEMREC_DATA_DIR)")

    p = sub.add_parser("compare", help="one table and one chart over several run folders")
    p.add_argument("runs", nargs="+", help="run folders of `memrec train`")
    p.add_argument("--chart", help="PNG path for the validation curves (one panel per data set)")
    p.add_argument("--x", choices=("epoch", "time"), default="epoch", help="chart x axis: epoch, or cumulative training time")

    p = sub.add_parser("config", help="show every config key of a model, its default and meaning")
    show = p.add_subparsers(dest="action", required=True).add_parser(
        "show", help="every key of a model's run config, its default and what it means",
        description="Every key of a model's run config with its value and meaning; set one with --KEY=VALUE in `memrec train`.")
    show.add_argument("model", choices=sorted(MODELS), help="the model")
    show.add_argument("--dataset", help="show the values of the frozen config shipped for this model and data set, if any")
    show.add_argument("--config", help="show the values of this YAML config")

    p = sub.add_parser("serve", help="run the online service (FastAPI) for a checkpoint")
    p.add_argument("checkpoint", help="a checkpoint.pt, or the run folder holding it")
    p.add_argument("--store", default="memrec-state.db", help="state store: SQLite path (default memrec-state.db), redis://..., postgresql://...")
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument("--port", type=int, default=8000, help="port to bind")
    p.add_argument("--allowed-hosts", action="append", default=[], metavar="HOST[,HOST...]",
                   help="more names requests may carry in their Host header, besides --host, localhost, 127.0.0.1 and [::1] "
                        "(*.example.com; * for any); others are refused, against DNS rebinding")
    p.add_argument("--token", help="bearer token for every endpoint but /health, /metrics and the API docs "
                                   "(else $MEMREC_SERVE_TOKEN; none: open, with a warning)")
    p.add_argument("--reset-memories", action="store_true", help="forget memories written by another model (event logs are kept)")
    p.add_argument("--import-training-users", action="store_true",
                   help="at start, record each training user's history (from the checkpoint's data set) as their event log, "
                        "so they are known as in `memrec recommend --user`; users with a log are left alone (default: off)")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="larger request bodies are refused with 413")
    p.add_argument("--worker-threads", type=int, default=256,
                   help="threads for blocking handlers; an event reply holds one while it waits for its group commit (default 256)")
    p.add_argument("--log-level", default="warning", help="uvicorn log level: critical, error, warning, info, debug")

    p = sub.add_parser("stream", help="train before a cut time T, replay every later event in time order through each policy (docs/stream.md); "
                                      "extra --section.key=value override the training config")
    p.add_argument("--model", default="sasrec", choices=sorted(MODELS), help="the model trained before the cut")
    p.add_argument("--dataset", default="ml-100k", help="a data set with timestamps")
    p.add_argument("--data-dir", help="where registered data sets are looked for (else $MEMREC_DATA_DIR)")
    p.add_argument("--cut", default="0.8", help="T: a quantile of the time line in (0, 1), a date YYYY-MM-DD or a timestamp")
    p.add_argument("--policies", default="frozen,neighbours,retrain", help="comma-separated: frozen, plain, neighbours, user-memory, both, retrain")
    p.add_argument("--memory", default="neighbours", choices=("neighbours", "off"), help="train with the neighbour memory")
    p.add_argument("--checkpoint", help="a model already trained on the events before the same cut (skips training)")
    p.add_argument("--sync-every", type=int, default=100, help="neighbours: the memory takes in new events every this many events")
    p.add_argument("--retrain-days", type=float, default=7.0, help="retrain: every this many days of data time")
    p.add_argument("--retrain-epochs", type=int, default=2, help="retrain: epochs per retraining (warm start)")
    p.add_argument("--buckets", type=int, default=10, help="time buckets of the report (equal numbers of events)")
    p.add_argument("--json", help="also write the report here (e.g. benchmarks/results/stream-ml-100k.json)")
    p.add_argument("--output", required=True, help="folder for the model, report.json and stream.png")

    p = sub.add_parser("tune", help="search a model's settings with Optuna on validation NDCG@10 (never test); "
                                    "extra --section.key=value override the base config (docs/tune.md)")
    add_run_config_arguments(p)
    p.add_argument("--space", help="YAML search space (default: the model config's search_space and train.lr, train.weight_decay)")
    p.add_argument("--trials", type=int, default=20, help="trials the study holds when done (a resumed study counts its earlier ones)")
    p.add_argument("--minutes", type=float, help="stop starting trials after this many minutes")
    p.add_argument("--startup", type=int, default=5, help="trials sampled at random, and run unpruned, before TPE and the median pruner take over")
    p.add_argument("--prune-from", type=int, default=3, help="the first epoch at which a trial may be pruned (at the first epochs every trial scores alike)")
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    p.add_argument("--output", required=True, help="study folder: study.db (resumable), trials.csv, tune.png, best.yaml")

    from memrec.assist.cli import add_arguments as add_assist_arguments

    add_assist_arguments(sub.add_parser("assist", help="MR.Rec assistant: build-memory, ask, evaluate, train-rl, serve-llm"))
    for subparsers in _subparsers(parser):  # every option of every subcommand says its default
        subparsers.formatter_class = DefaultsFormatter
    return parser


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "recommend": cmd_recommend, "compare": cmd_compare, "config": cmd_config,
            "serve": cmd_serve, "stream": cmd_stream, "tune": cmd_tune, "export": cmd_export}


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args, extra = parser.parse_known_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what `train --nproc` hands on to torchrun
    if extra and args.command not in ("train", "assist", "stream", "tune"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    bad = [e for e in extra if not (e.startswith("--") and "=" in e)] if args.command in ("train", "stream", "tune") else []
    if bad:
        parser.error(f"unrecognized arguments {bad}: config overrides look like --train.lr=0.001")
    keep_freed_memory()
    try:
        if args.command == "assist":
            from memrec.assist.cli import run as run_assist

            return run_assist(args, extra)
        if args.command == "datasets":
            cmd_datasets(args)
        else:
            COMMANDS[args.command](args, extra)
    except MemrecError as exc:
        print(f"memrec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`memrec recommend ... | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0


if __name__ == "__main__":
    sys.exit(main())

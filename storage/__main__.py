"""``python -m storage {upgrade,status,export,import,sweep,sweeps}``: manage the studio database from a shell.

``upgrade`` is what the refusal message of a worker (or of ``Storage(upgrade=False)``) points to.
``export RUN_ID FILE`` writes a finished run as a bundle; ``import FILE`` adds a bundle's run.
``sweep --config FILE --grid KEY=V1,V2 --seeds 0,1,2`` queues a sweep and prints its run ids (with
``--wait`` it runs them, locally or on Ray with ``--ray ADDRESS``, and prints the summary table);
``sweeps list|show|cancel|resume|delete [ID]`` handles sweeps as a whole.
"""

from __future__ import annotations

import argparse
import sys

from ptmoe_core.errors import PTMoEError

from .db import Database
from .errors import StorageError
from .executors import ENV_RAY_ADDRESS
from .paths import ENV_DB, resolve_db_url
from .schema import ensure_schema, inspect_schema


def build_parser() -> argparse.ArgumentParser:
    # The options go before or after the command; SUPPRESS keeps a subcommand's unset copy from
    # overwriting the value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=argparse.SUPPRESS,
                        help=f"database URL or SQLite path (default: ${ENV_DB}, else runs/studio.db)")
    common.add_argument("--runs-dir", default=argparse.SUPPRESS, help="runs folder (default: next to the SQLite file)")
    parser = argparse.ArgumentParser(prog="python -m storage", description="PT-MoE Studio database", parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("upgrade", parents=[common], help="create the database or bring its schema up to date")
    sub.add_parser("status", parents=[common], help="print the schema version")
    ex = sub.add_parser("export", parents=[common], help="write a finished run as a bundle file (.ptmoe.zip)")
    ex.add_argument("run_id", type=int)
    ex.add_argument("file")
    im = sub.add_parser("import", parents=[common], help="add the run of a bundle file to the database")
    im.add_argument("file")
    im.add_argument("--experiment", default="imported", help="experiment to put the run in (default: imported)")
    sw = sub.add_parser("sweep", parents=[common], help="queue a sweep: a config, a grid over its keys, seeds")
    sw.add_argument("--config", required=True, help="base configuration (YAML or JSON)")
    sw.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                    help="a configuration key and its values (repeat for more keys), e.g. method.n_experts=1,2,4")
    sw.add_argument("--seeds", default="0", help="training seeds, comma-separated (default: 0)")
    sw.add_argument("--experiment", default="default", help="experiment of the runs (default: default)")
    sw.add_argument("--name", default=None, help="sweep name, the runs' name prefix (default: the experiment's)")
    sw.add_argument("--ray", default=None, metavar="ADDRESS",
                    help=f"run on this Ray cluster (its dashboard address, e.g. http://HEAD:8265; env {ENV_RAY_ADDRESS})")
    sw.add_argument("--gpus-per-run", type=float, default=0.0, help="Ray: GPUs per run (0.25: four runs per GPU)")
    sw.add_argument("--cpus-per-run", type=float, default=1.0, help="Ray: CPUs per run (default 1)")
    sw.add_argument("--runs-per-device", type=int, default=1, help="local: runs sharing each GPU (default 1)")
    sw.add_argument("--wait", action="store_true", help="run the sweep here and print its summary table")
    ss = sub.add_parser("sweeps", parents=[common], help="list sweeps, or show/cancel/resume/delete one")
    ss.add_argument("action", choices=["list", "show", "cancel", "resume", "delete"])
    ss.add_argument("sweep_id", type=int, nargs="?")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.db, args.runs_dir = getattr(args, "db", None), getattr(args, "runs_dir", None)
    try:
        if args.command in ("upgrade", "status"):
            return _schema(args)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "sweeps":
            return _sweeps(args)
        return _bundle(args)
    except (StorageError, PTMoEError, OSError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 1


def _schema(args: argparse.Namespace) -> int:
    db = Database(resolve_db_url(args.db))
    try:
        state = ensure_schema(db, upgrade=True) if args.command == "upgrade" else inspect_schema(db)
    finally:
        db.dispose()
    print(f"{db.label}: schema {state.current or 'none'} (this version needs {state.head})")
    return 0 if state.up_to_date else 2


def _bundle(args: argparse.Namespace) -> int:
    from .bundles import export_run, import_bundle
    from .repo import Storage

    with Storage(args.db, runs_dir=args.runs_dir) as storage:
        if args.command == "export":
            path = export_run(storage, args.run_id, args.file)
            print(f"exported run {args.run_id} to {path} ({path.stat().st_size / 1024:.0f} KB)")
            return 0
        res = import_bundle(storage, args.file, args.experiment)
        if res.created:
            print(f"imported {args.file} as run {res.run_id} ({res.name}) in experiment {args.experiment}")
        else:
            print(f"{args.file} is already in this database as run {res.run_id} ({res.name}); nothing imported")
        return 0


def _sweep(args: argparse.Namespace) -> int:
    from ptmoe_core.config import read_config_file

    from .jobs import JobManager, JobSettings, make_executor
    from .repo import Storage
    from .sweep_spec import SweepSpec, parse_grid_arg, parse_seeds
    from .sweeps import format_table, launch_sweep, summarize, wait_sweep

    grid = dict(parse_grid_arg(g) for g in args.grid)
    spec = SweepSpec(read_config_file(args.config), grid, parse_seeds(args.seeds), args.experiment,
                     args.name or args.experiment)
    with Storage(args.db, runs_dir=args.runs_dir) as storage:
        settings = JobSettings(runs_per_device=args.runs_per_device)
        executor = make_executor(args.ray, runs_per_device=args.runs_per_device, gpus_per_run=args.gpus_per_run,
                                 cpus_per_run=args.cpus_per_run)
        jobs = JobManager(storage, settings, executor=executor)
        launch = launch_sweep(storage, spec, jobs)
        print(f"sweep {launch.sweep_id}: {len(launch.run_ids)} runs queued: {' '.join(map(str, launch.run_ids))}")
        if not args.wait:
            print("a studio on this database runs them (or run this command with --wait)")
            return 0
        jobs.start()
        try:
            runs = wait_sweep(storage, launch.sweep_id)
        except KeyboardInterrupt:
            from .sweeps import cancel_sweep

            print(f"cancelling sweep {launch.sweep_id}", file=sys.stderr)
            cancel_sweep(storage, launch.sweep_id, jobs)
            jobs.stop(cancel_running=True, timeout=120)
            return 130
        jobs.stop()
        print(format_table(summarize(storage, launch.sweep_id)))
        return 0 if all(r.status.value == "FINISHED" for r in runs) else 1


def _sweeps(args: argparse.Namespace) -> int:
    from .repo import Storage
    from .sweeps import cancel_sweep, delete_sweep, format_table, resume_sweep, summarize

    with Storage(args.db, runs_dir=args.runs_dir) as storage:
        if args.action == "list":
            for w in storage.list_sweeps():
                grid = ", ".join(f"{k}={','.join(map(str, v))}" for k, v in w.spec.get("grid", {}).items())
                print(f"{w.id}\t{w.name}\t{w.experiment}\t{w.run_count} runs\t{grid}")
            return 0
        if args.sweep_id is None:
            raise StorageError(f"sweeps {args.action} needs a sweep id")
        if args.action == "show":
            print(format_table(summarize(storage, args.sweep_id)))
        elif args.action == "cancel":
            print(f"cancel requested for {len(cancel_sweep(storage, args.sweep_id))} run(s)")
        elif args.action == "resume":
            ids = resume_sweep(storage, args.sweep_id)
            print(f"queued again: {' '.join(map(str, ids))}" if ids else "nothing to resume: every run finished or is queued")
        else:
            print(f"deleted sweep {args.sweep_id} ({len(delete_sweep(storage, args.sweep_id))} paths removed)")
        return 0


if __name__ == "__main__":
    sys.exit(main())

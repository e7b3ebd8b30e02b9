"""The ``masksearch`` command line: a thin layer over the Python API.

    masksearch create PATH [--cell-size N] [--codec lz4|zstd] [--index eager|lazy]
    masksearch ingest PATH FILES_OR_GLOBS... [--image-id ID] [--model-id X] [--mask-type X]
                      [--metadata FILE.csv|FILE.parquet] [--quiet]
    masksearch query PATH "SQL" [--format table|csv|json] [--max-rows N] [--no-index] [--stats]
                     [--html FILE]
    masksearch index PATH [--rebuild] [--quiet]
    masksearch check PATH
    masksearch info PATH [--json]
    masksearch explain PATH "SQL"
    masksearch repl PATH            (or just: masksearch PATH)
    masksearch copy SRC DEST [--storage-option KEY=VALUE ...] [--quiet]
    masksearch demo
    masksearch warmup
    masksearch serve PATH [--host 127.0.0.1] [--port 8765] [--images DIR] [--allow-writes]

PATH may be an ``s3://bucket/prefix`` URL (read-only) for query, explain, info, check, repl
and copy, with ``--storage-option KEY=VALUE`` or the AWS environment variables.

Every ``MaskSearchError`` is printed as ``error: <message>`` on stderr with exit code 1;
``check`` exits with 3 when it finds damage.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from . import __version__
from .errors import MaskSearchError

if TYPE_CHECKING:   # imported where used: each command loads only what it needs

    from .api import Database

_INT_TEXT = re.compile(r"^[+-]?\d+$")


Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CLIError(MaskSearchError):
    """A problem with the command line's own input (paths, options, metadata files)."""


# --- helpers -------------------------------------------------------------------------------
def _open(path: str, args: argparse.Namespace | None = None, *,
          read_only: bool = False) -> Database:
    """An existing database (a folder, or a URL on object storage with the command's
    ``--storage-option``s); never creates one."""
    import masksearch as ms

    from .store.location import is_url
    from .store.manifest import MANIFEST

    executor = getattr(args, "scheduler", None)
    if is_url(path):
        return ms.connect(path, create=False, storage_options=_storage_options(args),
                          executor=executor)
    if _storage_options(args):
        raise CLIError(f"--storage-option is for s3:// URLs; {path} is a local path")
    if not (Path(path) / MANIFEST).is_file():
        raise CLIError(f"no masksearch database at {path} "
                       f"(create one with: masksearch create {path})")
    return ms.connect(path, create=False, read_only=read_only, executor=executor)


_NUMERIC_OPTIONS = {"request_timeout": float, "connect_timeout": float, "load_frequency": int}


def _storage_options(args: argparse.Namespace | None) -> dict[str, object] | None:
    """``--storage-option KEY=VALUE``s as pyarrow's S3 options (true/false as booleans,
    timeouts as numbers); None without any (the AWS environment then)."""
    pairs = getattr(args, "storage_option", None) or []
    if not pairs:
        return None
    options: dict[str, object] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise CLIError(f"--storage-option takes KEY=VALUE (e.g. endpoint_override="
                           f"localhost:9000), got {pair!r}")
        key = key.strip()
        try:
            options[key] = (value.lower() == "true" if value.lower() in ("true", "false")
                            else _NUMERIC_OPTIONS.get(key, str)(value))
        except ValueError:
            raise CLIError(f"--storage-option {key}: expected a number, got {value!r}"
                           ) from None
    return options


def _id_value(text: str) -> int | str:
    """Command-line id values: integers when they look like integers, else strings."""
    text = text.strip()
    return int(text) if _INT_TEXT.match(text) else text


def _parse_ids(text: str | None) -> int | str | list[int | str] | None:
    """``--image-id``: one value for every mask, or a comma-separated list, one per mask."""
    if text is None:
        return None
    parts = [_id_value(p) for p in text.split(",")]
    return parts[0] if len(parts) == 1 else parts


class _Progress:
    """A tqdm bar on stderr fed by ``Database.ingest(progress=...)``."""

    def __init__(self, enabled: bool, desc: str = "ingest", unit: str = "mask") -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=None, desc=desc, unit=unit, file=sys.stderr,
                        disable=not enabled, leave=False, dynamic_ncols=True,
                        unit_scale=unit == "B", unit_divisor=1024)

    def __call__(self, done: int, total: int | None) -> None:
        if self.bar.total != total:
            self.bar.total = total
            self.bar.refresh()
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _read_sql(text: str) -> str:
    return sys.stdin.read() if text == "-" else text


# --- subcommands ---------------------------------------------------------------------------
def cmd_create(args: argparse.Namespace) -> int:
    import masksearch as ms

    from .store.manifest import MANIFEST

    root = Path(args.path)
    if (root / MANIFEST).exists():
        raise CLIError(f"a masksearch database exists at {args.path} already")
    db = ms.connect(root, cell_size=args.cell_size, codec=args.codec, index=args.index)
    info = db.info()
    print(f"created an empty database at {db.path} "
          f"(cell size {info['cell_size']}, codec {info['codec']}, "
          f"{info['index_mode']} indexing)")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """Ingest files, or a COCO file; a missing database is created with the defaults."""
    import masksearch as ms

    db = ms.connect(args.path)
    if args.format == "coco":
        if len(args.files) != 1:
            raise CLIError("--format coco takes one annotation file")
        masks: object = ms.from_coco(args.files[0], images_dir=args.images)
    elif args.images is not None:
        raise CLIError("--images goes with --format coco")
    else:
        masks = args.files
    progress = _Progress(not args.quiet and sys.stderr.isatty())
    try:
        new = db.ingest(masks, image_id=_parse_ids(args.image_id),
                        model_id=_parse_ids(args.model_id),
                        mask_type=_parse_ids(args.mask_type), metadata=args.metadata,
                        key=args.key, allow_missing=args.allow_missing,
                        box_format=args.box_format, progress=progress,
                        replace_on=_names(args.replace_on))
    finally:
        progress.close()
    replaced = f", replacing {new.replaced}" if args.replace_on else ""
    print(f"ingested {len(new)} masks into {db.path} (mask_id {new[0]}..{new[-1]}{replaced})")
    return 0


def _names(text: str | None) -> list[str]:
    if text is None:
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise CLIError("--replace-on needs column names, e.g. --replace-on image_id,model_id")
    return names


def cmd_annotate(args: argparse.Namespace) -> int:
    """Join a metadata table to the masks by a key column."""
    db = _open(args.path)
    n = db.add_metadata(args.file, key=args.key, allow_missing=args.allow_missing,
                        box_format=args.box_format)
    print(f"annotated {n} masks of {db.path} from {args.file} (joined on {args.key})")
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    db = _open(args.path)
    r = db.compact()
    print(f"compacted {db.path}: {r.segments_before} segments -> {r.segments_after}, "
          f"{r.masks_rewritten} masks rewritten, {r.cached_chis_removed} cached CHIs of "
          "aggregated masks removed")
    return 0


def cmd_upgrade(args: argparse.Namespace) -> int:
    db = _open(args.path)
    r = db.upgrade()
    if not r.masks_rewritten:
        print(f"{db.path} is up to date: nothing to upgrade")
    else:
        print(f"upgraded {db.path}: {r.masks_rewritten} masks rewritten in tiles, "
              f"{r.segments_before} segments -> {r.segments_after}")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from .format import format_csv, format_json, format_table

    db = _open(args.path, args)
    sql = _read_sql(args.sql)
    for notice in db.notices(sql):
        print(f"notice: {notice}", file=sys.stderr)
    result = db.query(sql, use_index=not args.no_index)
    table = result.to_arrow()
    if args.format == "csv":
        sys.stdout.write(format_csv(table))
    elif args.format == "json":
        print(format_json(table))
    else:
        print(format_table(table, max_rows=args.max_rows))
        print(f"({len(result)} row{'s' if len(result) != 1 else ''})")
    if args.stats:
        print(result.stats.summary(), file=sys.stderr)
    if args.html:
        cards = result.save_html(args.html)
        print(f"wrote {cards} card{'s' if cards != 1 else ''} to {args.html}", file=sys.stderr)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    db = _open(args.path)
    try:
        r = db.prepare_aggregates([c.strip() for c in args.group_by.split(",") if c.strip()],
                                  [k.strip() for k in args.kinds.split(",") if k.strip()],
                                  where=args.where)
    except ValueError as e:
        raise CLIError(str(e).replace("prepare_aggregates: ", "")) from None
    print(f"prepared {', '.join(r.kinds)} of {r.groups} groups by {', '.join(r.group_by)}"
          + (f" (WHERE {r.where})" if r.where else "") + f" in {db.path}: {r.computed} "
          f"computed ({r.masks_read} masks read, {r.chis_saved} CHIs written), {r.already} "
          f"stored already; {r.seconds:.1f} s")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .format import format_info

    info = _open(args.path, args).info()
    print(json.dumps(info, indent=1) if args.json else format_info(info))
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from .format import human_bytes

    db = _open(args.path)
    progress = _Progress(not args.quiet and sys.stderr.isatty(), desc="index")
    try:
        if args.rebuild:
            built = db.rebuild_index(progress=progress)
        else:
            built = db.build_index(progress=progress)
    finally:
        progress.close()
    info = db.info()
    print(f"{'rebuilt' if args.rebuild else 'built'} {built} "
          f"{'' if args.rebuild else 'missing '}CHIs; {info['indexed_masks']} of "
          f"{info['masks']} masks indexed ({human_bytes(info['index_bytes'])})")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Verify every file; exit 0 when nothing is damaged, 3 when something is."""
    report = _open(args.path, args).check()
    print(report.summary())
    return 0 if report.ok else 3


def cmd_explain(args: argparse.Namespace) -> int:
    print(_open(args.path, args).explain(_read_sql(args.sql)))
    return 0


def cmd_repl(args: argparse.Namespace) -> int:
    from .repl import main as repl_main

    return repl_main(_open(args.path, args))


def cmd_copy(args: argparse.Namespace) -> int:
    """Copy a database to a new folder or URL: segments first, the manifest last."""
    from .format import human_bytes
    from .store.location import is_url

    if not is_url(args.source) and not is_url(args.dest) and _storage_options(args):
        raise CLIError("--storage-option is for s3:// URLs; SRC and DEST are local paths")
    source = _open(args.source, args if is_url(args.source) else None, read_only=True)
    bar = _Progress(not args.quiet and sys.stderr.isatty(), desc="copy", unit="B")
    try:
        done = source.copy_to(args.dest, progress=bar,
                              storage_options=_storage_options(args) if is_url(args.dest)
                              else None)
    finally:
        bar.close()
    print(f"copied {done.masks} masks ({done.files} files, {human_bytes(done.bytes)}) from "
          f"{source.path} to {done.destination}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import main as demo_main

    demo_main()
    return 0


def cmd_warmup(args: argparse.Namespace) -> int:
    from .warmup import warmup

    def step(what: str) -> None:
        if not args.quiet:
            print(f"  {what}", file=sys.stderr, flush=True)

    seconds = warmup(progress=step)
    print(f"kernels compiled or loaded from the Numba cache in {seconds:.1f} s")
    return 0


# --- parser --------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from .web import require_extra

    require_extra()
    from .web.config import ServeConfig
    from .web.server import serve

    serve(ServeConfig(args.path, host=args.host, port=args.port, images=args.images,
                      allow_writes=args.allow_writes, timeout=args.timeout,
                      max_rows=args.max_rows))
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _add_create(sub: Subparsers) -> None:
    p = sub.add_parser("create", help="create an empty database",
                       description="Create an empty database; index settings are fixed here.")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--cell-size", type=_positive_int, default=None,
                   help="index cell size in pixels (default 16)")
    p.add_argument("--codec", choices=("lz4", "zstd"), default=None,
                   help="pixel compression (default lz4)")
    p.add_argument("--index", choices=("eager", "lazy"), default=None,
                   help="build CHIs at ingest (eager, default) or as queries read masks")
    p.set_defaults(func=cmd_create)


def _add_ingest(sub: Subparsers) -> None:
    p = sub.add_parser(
        "ingest", help="add mask files (PNG/NPY/NPZ) or a COCO annotation file",
        description="Add masks atomically; creates the database if missing. Files (paths, "
                    "folders or globs): image_id defaults to each file's stem. A --metadata "
                    "CSV or Parquet file is matched to the files by its key column (--key, "
                    "default 'file': a file's path, name or stem), never by position; its "
                    "columns become metadata (image_id/model_id/mask_type columns set those "
                    "ids; strings like 'x0,y0,x1,y1' become boxes). --format coco reads a "
                    "COCO instances or results JSON file.")
    p.add_argument("path", metavar="PATH")
    p.add_argument("files", metavar="FILES_OR_GLOBS", nargs="+")
    p.add_argument("--format", choices=("files", "coco"), default="files",
                   help="files (default) or coco: one COCO annotation JSON file")
    p.add_argument("--images", metavar="DIR", help="coco: the images folder (fills image_path)")
    p.add_argument("--image-id", help="one id for all masks, or comma-separated, one per mask")
    p.add_argument("--model-id", help="one id for all masks, or comma-separated, one per mask")
    p.add_argument("--mask-type", help="one value for all masks, or comma-separated, one per mask")
    p.add_argument("--metadata", metavar="CSV_OR_PARQUET",
                   help="a .csv or .parquet file with one row per file, matched by --key")
    p.add_argument("--key", default=None,
                   help="the metadata column that names each file (default: file)")
    p.add_argument("--allow-missing", action="store_true",
                   help="files without a metadata row get NULL metadata (else an error)")
    p.add_argument("--box-format", choices=("xyxy", "xywh"), default="xyxy",
                   help="how boxes are given: x0,y0,x1,y1 (default) or x,y,width,height")
    p.add_argument("--replace-on", metavar="COLUMNS",
                   help="an upsert: comma-separated key columns (e.g. image_id,model_id); "
                        "masks sharing a new mask's values of them are replaced in the same "
                        "commit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_ingest)


def _add_changes(sub: Subparsers) -> None:
    p = sub.add_parser(
        "annotate", help="join a CSV/Parquet table's columns to the masks by a key column",
        description="Add or update metadata columns from a table, matched to the masks by "
                    "--key (default image_id), never by position; atomic.")
    p.add_argument("path", metavar="PATH")
    p.add_argument("file", metavar="CSV_OR_PARQUET")
    p.add_argument("--key", default="image_id", help="the key column (default: image_id)")
    p.add_argument("--allow-missing", action="store_true",
                   help="skip rows whose key matches no mask (else an error)")
    p.add_argument("--box-format", choices=("xyxy", "xywh"), default="xyxy",
                   help="how boxes are given: x0,y0,x1,y1 (default) or x,y,width,height")
    p.set_defaults(func=cmd_annotate)
    p = sub.add_parser("compact", help="rewrite small and partly deleted segments into full "
                                       "ones")
    p.add_argument("path", metavar="PATH")
    p.set_defaults(func=cmd_compact)
    p = sub.add_parser("upgrade", help="rewrite segments of older pixel layouts into tiles "
                                       "(faster verification; answers unchanged)")
    p.add_argument("path", metavar="PATH")
    p.set_defaults(func=cmd_upgrade)


def _add_storage(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage-option", action="append", metavar="KEY=VALUE",
                   help="for an s3:// URL: an option of pyarrow's S3 file system "
                        "(endpoint_override, scheme, access_key, secret_key, region...); "
                        "repeat for more; without any, the AWS environment variables")


def _add_scheduler(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the statements on this Dask cluster (e.g. tcp://host:8786; "
                        "needs masksearch[dask]); its workers open PATH themselves")


def _add_query(sub: Subparsers) -> None:
    p = sub.add_parser("query", help="run one statement and print its rows",
                       description="Run one statement ('-' reads it from stdin). PATH may "
                                   "be an s3://bucket/prefix URL (read-only).")
    p.add_argument("path", metavar="PATH")
    p.add_argument("sql", metavar="SQL")
    _add_storage(p)
    _add_scheduler(p)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--max-rows", type=_positive_int, default=None,
                   help="table format: show at most N rows (default: all)")
    p.add_argument("--no-index", action="store_true",
                   help="brute force: verify every mask (same results, slower)")
    p.add_argument("--stats", action="store_true", help="print query statistics to stderr")
    p.add_argument("--html", metavar="FILE",
                   help="also write the rows as pictures to FILE, a self-contained HTML page")
    p.set_defaults(func=cmd_query)


def _add_index(sub: Subparsers) -> None:
    p = sub.add_parser("index", help="build the CHIs lazy indexing has not built yet")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--rebuild", action="store_true",
                   help="rebuild every CHI from the pixels (repairs a damaged index)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_index)


def _add_prepare(sub: Subparsers) -> None:
    p = sub.add_parser(
        "prepare", help="store every group's intersect/union/mean masks' CHIs ahead of queries",
        description="Compute and store the CHIs of every group's aggregated masks, like a "
                    "materialized view: queries over them (IoU, say) are then bounded from "
                    "them, often without reading a pixel. Groups changed later (ingest, "
                    "DELETE, UPDATE of the key) are answered from their members until "
                    "prepared again; preparing again computes only those.")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--group-by", default="image_id",
                   help="the GROUP BY column(s), comma-separated (default image_id)")
    p.add_argument("--kinds", default="intersect,union",
                   help="aggregations among intersect, union, mean, comma-separated "
                        "(default intersect,union)")
    p.add_argument("--where", default=None, metavar="CONDITION",
                   help="prepare the groups of the masks satisfying this SQL condition")
    p.set_defaults(func=cmd_prepare)


def _add_path_commands(sub: Subparsers) -> None:
    """The commands that take a database and little else."""
    p = sub.add_parser("check", help="verify every file against its checksums",
                       description="Verify every file of the database; exit code 3 when "
                                   "anything is damaged.")
    p.add_argument("path", metavar="PATH")
    _add_storage(p)
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("info", help="describe a database")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_storage(p)
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("explain", help="print the plan of a statement")
    p.add_argument("path", metavar="PATH")
    p.add_argument("sql", metavar="SQL")
    _add_storage(p)
    p.set_defaults(func=cmd_explain)
    p = sub.add_parser("repl", help="an interactive shell (also: masksearch PATH)",
                       description="An interactive shell: statements end with ';', .help "
                                   "lists the dot-commands. Reads statements from stdin "
                                   "when it is not a terminal.")
    p.add_argument("path", metavar="PATH")
    _add_storage(p)
    _add_scheduler(p)
    p.set_defaults(func=cmd_repl)
    p = sub.add_parser(
        "copy", help="copy a database to a new folder or s3:// URL",
        description="Copy a database (a folder or an s3://bucket/prefix URL) to a new, empty "
                    "folder or URL, as it is when the copy starts: every file verified, the "
                    "segments first and the manifest last, so no database appears at DEST "
                    "until the copy is complete; a failed copy removes what it wrote.")
    p.add_argument("source", metavar="SRC")
    p.add_argument("dest", metavar="DEST")
    _add_storage(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_copy)
    p = sub.add_parser("demo", help="build a sample database and run the paper's queries")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("warmup", help="compile the query kernels into the Numba cache",
                       description="Compile every kernel variant ingest and queries use "
                                   "into Numba's on-disk cache (about 20 s once after an "
                                   "install; seconds when it is warm already), so that the "
                                   "first query does not compile them.")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_warmup)


def _add_serve(sub: Subparsers) -> None:
    p = sub.add_parser("serve", help="a local web app: SQL editor, query builder, pictures",
                       description="Serve the database as a local web app and a JSON API "
                                   "(needs the web extra: pip install 'masksearch[web]'). "
                                   "Read-only unless --allow-writes.")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default "
                                                       "127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    p.add_argument("--images", metavar="DIR", help="folder that relative image_path values "
                                                   "are read from (kept in the database)")
    p.add_argument("--allow-writes", action="store_true",
                   help="allow statements that change data")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds a query may run (default 120)")
    p.add_argument("--max-rows", type=_positive_int, default=100_000,
                   help="rows of a result the server keeps (default 100000)")
    p.set_defaults(func=cmd_serve)


def build_parser() -> tuple[argparse.ArgumentParser, set[str]]:
    """The command line's parser and its command names."""
    parser = argparse.ArgumentParser(
        prog="masksearch",
        description="Exact, index-accelerated queries over image masks.")
    parser.add_argument("--version", action="version", version=f"masksearch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in (_add_create, _add_ingest, _add_changes, _add_query, _add_index,
                _add_prepare, _add_path_commands, _add_serve):
        add(sub)
    return parser, set(sub.choices)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = build_parser()
    if len(argv) == 1 and not argv[0].startswith("-") and argv[0] not in commands:
        argv = ["repl", argv[0]]          # `masksearch PATH` opens the shell
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except MaskSearchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `masksearch query ... | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1

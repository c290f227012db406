"""`tpme import SOURCE RESULTS_DIR --out RUN_DIR`: published runs as records of a run directory.

Exit codes: 0 every file imported (a published run that failed is imported too, as a
failed record); 1 some files were refused (each named on stderr with its problem) and
the others imported; 2 bad input: no such source or folder, a RUN_DIR that is not empty
without --append, or no file importable at all (nothing is written then).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tpme.cli.common import print_json

EXIT_SOME_REFUSED = 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    from tpme.importers import available_importers, get_importer

    sources = available_importers()
    p = sub.add_parser(
        "import",
        help="import published measurements (e.g. peft's method_comparison runs) as a run directory",
        description="Read a folder of published result files and write one record per run (source: published) into RUN_DIR/results.jsonl, "
        "so that `tpme score`, `report`, `sensitivity` and `compare` work on it as on a measured run. Sources: "
        + "; ".join(f"{n}: {get_importer(n).description}" for n in sources)
        + ". A file that is not valid JSON or not of the source's format is named on stderr with its problem and skipped; the others are imported. "
        "Exit 0: all imported; 1: some files refused; 2: bad input or nothing importable (nothing written).",
    )
    p.add_argument("source", choices=sources, metavar="SOURCE", help=f"the format of the files: {', '.join(sources)}")
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="the folder of result files (e.g. peft's method_comparison/MetaMathQA/results), or one file")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="the run directory to write; must be new or empty unless --append")
    p.add_argument("--append", action="store_true", help="add to the records already in RUN_DIR (a run imported before is skipped, not duplicated)")
    p.add_argument("--json", action="store_true", help="print {run_dir, results_file, imported, already_there, refused} as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tpme.errors import TpmeError
    from tpme.importers import get_importer
    from tpme.importers.write import check_target, write_records

    out_dir = Path(args.out)
    check_target(out_dir, args.append)
    result = get_importer(args.source).read(Path(args.results_dir))
    for r in result.refused:
        print(f"tpme: refused {r.file}: {r.problem}", file=sys.stderr)
    if not result.records:
        raise TpmeError(f"no file of {args.results_dir} could be imported as {args.source} ({len(result.refused)} refused, listed above)",
                        f"give the folder of {args.source} result files")
    written = write_records(out_dir, [rec for _, rec in result.records], args.append)
    files = {id(rec): f for f, rec in result.records}
    if args.json:
        print_json({
            "run_dir": str(out_dir), "results_file": str(written.path), "kept": written.kept,
            "imported": [{"file": files[id(r)], "label": r.label, "status": r.status, **({"error": r.error} if r.error else {})} for r in written.added],
            "already_there": [{"file": files[id(r)], "label": r.label} for r in written.already_there],
            "refused": [{"file": r.file, "problem": r.problem} for r in result.refused],
        })
    failed = [r for r in written.added if not r.ok]
    for r in failed:
        print(f"tpme: {r.label}: published run {r.status}: {r.error}", file=sys.stderr)
    print(f"tpme: {len(written.added)} run(s) imported into {written.path} ({len(failed)} failed run(s) among them), "
          f"{len(written.already_there)} already there, {len(result.refused)} file(s) refused", file=sys.stderr)
    return EXIT_SOME_REFUSED if result.refused else 0

"""make_report: write reports/<name>/ from a runs folder."""
from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv: list[str] | None = None, prog: str = "make_report") -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description="Write the lab report (index.html, README.md, figures/) of a runs folder.")
    parser.add_argument("--runs", required=True, help="runs folder written by run_study (holds data.json, "
                                                      "studies/, records/, models/)")
    parser.add_argument("--name", help="report name: the report goes to OUT/NAME (default: the runs folder's name)")
    parser.add_argument("--out", default="reports", help="folder that holds reports (default: reports)")
    parser.add_argument("--data", help="local copy of the training channel for the EDA figures, when the runs "
                                       "trained on data not on this machine (e.g. S3 channels)")
    parser.add_argument("--compare", metavar="RUNS", help="a second runs folder of the same studies trained with "
                                                          "another budget (e.g. fewer epochs): both budgets are "
                                                          "shown side by side for every factor, with the verdicts "
                                                          "that change; --runs is the budget whose runs are "
                                                          "checked for convergence")
    parser.add_argument("--budget-names", metavar="A,B", help="names of the --runs and --compare budgets in the "
                                                              "report (default: from their recipes, e.g. '4 epochs')")
    parser.add_argument("--redraw-model-figures", action="store_true",
                        help="draw RUNS/model_figures again from the base CNN's kept model even when they show "
                             "that run already")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    return parser.parse_args(argv)


def _budget_names(text: str | None, compare: str | None) -> tuple[str | None, str | None]:
    from .build import ReportError

    if not text:
        return None, None
    names = [part.strip() for part in text.split(",")]
    if not compare or len(names) != 2 or not all(names):
        raise ReportError(f"--budget-names {text!r}: expected two names, A,B, with --compare")
    return names[0], names[1]


def convlab_main(argv: list[str] | None = None) -> int:
    return main(argv, prog="convlab report")


def main(argv: list[str] | None = None, prog: str = "make_report") -> int:
    args = parse_args(argv, prog)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from pathlib import Path

    from training.data import DataError
    from training.experiments.records import RecordError

    from .build import ReportError, build_report

    name = args.name or Path(args.runs).resolve().name
    try:
        names = _budget_names(args.budget_names, args.compare)
        paths = build_report(args.runs, name, args.out, args.data, compare=args.compare, budget_names=names,
                             redraw_model_figures=args.redraw_model_figures)
    except (ReportError, RecordError, DataError, FileNotFoundError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    print(f"report: {paths['html']} and {paths['readme']} ({len(paths['figures'])} figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`instructrec-batch`: one command per job. Typer (on click) gives typed options and --help for free.

Every subcommand takes --conf FILE (repeatable; default conf/local.yaml over conf/base.yaml) and
--set key.path=value (repeatable). Errors the user can act on print one clear line and exit 2.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .config import Config, load_config
from .errors import InstructRecError
from .logs import setup_logging

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="InstructRec as a nightly batch job: Spark builds prompts from a Delta lake, Ray scores them.",
)
log = logging.getLogger("instructrec_batch")

ConfOpt = Annotated[Optional[list[Path]], typer.Option("--conf", help="YAML layered over conf/base.yaml (repeatable); default conf/local.yaml")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="override, e.g. --set scoring.top_k=5 (repeatable)")]
DateOpt = Annotated[Optional[str], typer.Option("--run-date", help="YYYY-MM-DD (default: today)")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="skip stages that already succeeded for this date with the same inputs and config")]
FullOpt = Annotated[bool, typer.Option("--full", help="recompute every candidate list and score every user, copying nothing from earlier dates (same as --set scoring.reuse_unchanged=false --set retrieval.reuse_days=0)")]


def _config(conf: list[Path] | None, overrides: list[str] | None) -> Config:
    cfg = load_config(conf, overrides)
    setup_logging(cfg.logging.level, cfg.logging.structured)
    return cfg


@app.command()
def ingest(conf: ConfOpt = None, set_: SetOpt = None, run_date: DateOpt = None) -> None:
    """Load the configured sources (ingest.sources) into the lake's input tables."""
    from .pipeline import commands
    from .pipeline.nightly import check_run_date

    commands.ingest(_config(conf, set_), check_run_date(run_date))


@app.command()
def candidates(conf: ConfOpt = None, set_: SetOpt = None, run_date: DateOpt = None, resume: ResumeOpt = False) -> None:
    """Validate the inputs and generate N candidates per user (Spark) for a run date."""
    from .pipeline.nightly import check_run_date, run_spark_stages

    run_spark_stages(_config(conf, set_), check_run_date(run_date), ("candidates",), resume)


@app.command()
def prompts(conf: ConfOpt = None, set_: SetOpt = None, run_date: DateOpt = None, resume: ResumeOpt = False) -> None:
    """Build every user's InstructRec prompt from the run date's candidates (Spark)."""
    from .pipeline.nightly import check_run_date, run_spark_stages

    run_spark_stages(_config(conf, set_), check_run_date(run_date), ("prompts",), resume)


@app.command()
def preferences(conf: ConfOpt = None, set_: SetOpt = None, run_date: DateOpt = None, resume: ResumeOpt = False) -> None:
    """LLM teacher: write one sentence of taste per reviewer into the preferences table (Ray); the next
    prompts stage states those users' preference with it. Only reviewers whose reviews changed."""
    from .pipeline.nightly import check_run_date, run_spark_stages

    run_spark_stages(_config(conf, set_), check_run_date(run_date), ("preferences",), resume)


@app.command("build-prompts")
def build_prompts(conf: ConfOpt = None, set_: SetOpt = None, run_date: DateOpt = None, resume: ResumeOpt = False) -> None:
    """candidates then prompts in one Spark session (what spark-submit jobs/build_prompts.py runs)."""
    from .pipeline.nightly import SPARK_STAGES, check_run_date, run_spark_stages

    run_spark_stages(_config(conf, set_), check_run_date(run_date), SPARK_STAGES, resume)


@app.command()
def score(conf: ConfOpt = None, set_: SetOpt = None, run_date: DateOpt = None, resume: ResumeOpt = False,
          full: FullOpt = False) -> None:
    """Score the run date's prompts with the tuned model on a Ray actor pool; write top-K. Users whose
    inputs are unchanged since the last scored date get that date's rows (unless --full)."""
    from .pipeline.nightly import check_run_date, run_score

    run_score(_config(conf, _with_full(set_, full)), check_run_date(run_date), resume)


@app.command()
def nightly(conf: ConfOpt = None, set_: SetOpt = None, run_date: DateOpt = None, resume: ResumeOpt = False,
            full: FullOpt = False) -> None:
    """candidates -> prompts (Spark) -> score (Ray) for one run date."""
    from .pipeline.nightly import check_run_date, run_nightly

    run_nightly(_config(conf, _with_full(set_, full)), check_run_date(run_date), resume)


def _with_full(overrides: list[str] | None, full: bool) -> list[str] | None:
    return [*(overrides or []), "scoring.reuse_unchanged=false", "retrieval.reuse_days=0"] if full else overrides


@app.command()
def tune(conf: ConfOpt = None, set_: SetOpt = None) -> None:
    """Instruction-tune the base model with LoRA on the lake; publish a registry version."""
    from .pipeline import commands

    commands.tune(_config(conf, set_))


@app.command("fit-retriever")
def fit_retriever(conf: ConfOpt = None, set_: SetOpt = None) -> None:
    """Fit the sequential retriever (SASRec) on the lake's interactions; publish a registry version."""
    from .pipeline import commands

    commands.fit_retriever(_config(conf, set_))


@app.command("fit-fusion")
def fit_fusion(conf: ConfOpt = None, set_: SetOpt = None) -> None:
    """Fit the score fusion of a published model again (model.version) on validation users; no training."""
    from .pipeline import commands

    commands.fit_fusion(_config(conf, set_))


@app.command()
def evaluate(conf: ConfOpt = None, set_: SetOpt = None) -> None:
    """Leave-one-out evaluation against baselines; writes eval_runs and a report."""
    from .pipeline import commands

    commands.evaluate(_config(conf, set_))


@app.command()
def sql(query: Annotated[str, typer.Argument(help="e.g. \"SELECT * FROM latest_recommendations LIMIT 10\"")],
        conf: ConfOpt = None, set_: SetOpt = None,
        limit: Annotated[int, typer.Option(help="rows to print")] = 50) -> None:
    """SQL over the lake's Delta tables with no JVM (DataFusion); `latest_recommendations` is a view."""
    from .lake import Lake
    from .sql import run_sql

    from .tables import format_table

    cfg = _config(conf, set_)
    table = run_sql(Lake(cfg.lake), query)
    print(format_table(table, limit))


@app.command("config")
def show_config(conf: ConfOpt = None, set_: SetOpt = None) -> None:
    """Print every knob's effective value (conf/base.yaml + --conf files + --set), as YAML."""
    import yaml

    print(yaml.safe_dump(_config(conf, set_).model_dump(mode="json"), sort_keys=False), end="")


@app.command()
def demo(conf: ConfOpt = None, set_: SetOpt = None, run_date: DateOpt = None) -> None:
    """The newcomer's tour: build the lake from the bundled sample, get a model, run nightly, show results."""
    from .pipeline.demo import run_demo
    from .pipeline.nightly import check_run_date

    run_demo(_config(conf, set_), check_run_date(run_date))


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=False)
    except InstructRecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        raise


if __name__ == "__main__":
    main()

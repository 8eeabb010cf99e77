"""``marketlog backtest run | monte-carlo | walk-forward``: each writes JSON and an HTML report
to ``--out``; ``run`` also leaves its event store there (MARKETLOG_DATA_DIR=<out> and
``marketlog audit``/``verify`` read it like any other)."""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

backtest_app = typer.Typer(help="Backtests through the real engine and its controls; Monte "
                           "Carlo and walk-forward analysis.", no_args_is_help=True)

TicksOpt = Annotated[Path, typer.Option("--ticks", exists=True, dir_okay=False,
                                        help="CSV: ts_ns,type(Q|T),venue,symbol,bid,"
                                        "bid_size,ask,ask_size,price,size")]
StrategyOpt = Annotated[str, typer.Option("--strategy", help="A registered strategy name.")]
ParamOpt = Annotated[list[str] | None, typer.Option("--param", help="k=v, repeatable.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of ids and every random draw.")]
OutOpt = Annotated[Path, typer.Option("--out", file_okay=False, help="Output directory.")]


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True))


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(f"[bold red]error:[/] {message}")
    return typer.Exit(1)


def _write(out: Path, name: str, data: Any, html: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2
                                                    | orjson.OPT_SERIALIZE_NUMPY))
    (out / f"{name}.html").write_text(html)


def _config(capital: float, sample_ms: int, feed_us: int, order_us: int, maker: str,
            taker: str) -> Any:
    from commands.backtest import BacktestConfig

    return BacktestConfig(feed_latency_ns=feed_us * 1000, order_latency_ns=order_us * 1000,
                          maker_fee=Decimal(maker), taker_fee=Decimal(taker),
                          capital=capital, sample_ns=sample_ms * 1_000_000)


@backtest_app.command("run")
def run(ticks: TicksOpt, strategy: StrategyOpt, out: OutOpt, param: ParamOpt = None,
        seed: SeedOpt = 1,
        capital: Annotated[float, typer.Option(min=1.0)] = 1_000_000.0,
        sample_ms: Annotated[int, typer.Option(min=1, help="P&L curve period.")] = 1000,
        feed_latency_us: Annotated[int, typer.Option(min=0)] = 0,
        order_latency_us: Annotated[int, typer.Option(min=0)] = 0,
        maker_fee: Annotated[str, typer.Option(help="Per share; negative: rebate.")] = "0",
        taker_fee: Annotated[str, typer.Option(help="Per share.")] = "0",
        slippage_ticks: Annotated[int, typer.Option(min=0)] = 0,
        itch_date: Annotated[datetime | None, typer.Option(
            formats=["%Y-%m-%d"], help="The ticks are an ITCH 5.0 file of this session date "
            "(books are built from it); otherwise a CSV.")] = None) -> None:
    """Replay a tick file (CSV or ITCH 5.0) through a strategy, the engine's controls and
    the simulated venue."""
    from api.backtest_report import backtest_html
    from commands.backtest import make_strategy, parse_params
    from infrastructure.backtest_venue import run_backtest
    from infrastructure.market_data_files import market_data

    day = None if itch_date is None else itch_date.date()

    try:
        strat = make_strategy(strategy, parse_params(param or []))
        config = _config(capital, sample_ms, feed_latency_us, order_latency_us, maker_fee,
                         taker_fee)
        total = sum(1 for _ in market_data(ticks, day))
        with _progress() as bar:
            task = bar.add_task("replaying ticks", total=total)

            def counted() -> Any:
                for i, tick in enumerate(market_data(ticks, day), 1):
                    if i % 5000 == 0:
                        bar.update(task, completed=i)
                    yield tick
                bar.update(task, completed=total)

            result = run_backtest(counted(), strat, out, seed, config,
                                  slippage_ticks=slippage_ticks)
    except (ValueError, FileExistsError) as exc:
        raise _fail(str(exc)) from None
    data = result.as_dict()
    _write(out, "backtest", data, backtest_html(data))
    m = result.metrics
    typer.echo(f"{result.ticks} ticks, {result.orders} orders, rejects {result.rejects or {}}; "
               f"P&L {m.final_pnl:,.2f}, Sharpe {m.sharpe:.2f}, Sortino {m.sortino:.2f}, "
               f"max DD {100 * m.max_drawdown:.2f}%, fill ratio {m.fill_ratio:.2f}")
    typer.echo(f"chain head #{result.head_position} {result.head_hash}")
    typer.echo(f"report: {out / 'backtest.html'}; store: {out / 'events.sqlite'}")


@backtest_app.command("monte-carlo")
def monte_carlo(strategy: StrategyOpt, out: OutOpt, param: ParamOpt = None, seed: SeedOpt = 1,
                runs: Annotated[int, typer.Option(min=1)] = 30,
                workers: Annotated[int, typer.Option(min=1)] = 2,
                ticks: Annotated[Path | None, typer.Option(
                    exists=True, dir_okay=False, help="Perturb this replay; unset: "
                    "synthetic paths (bull, flat, crash).")] = None,
                regime: Annotated[list[str] | None, typer.Option()] = None,
                steps: Annotated[int, typer.Option(min=10, help="Path length (minutes).")
                                 ] = 390,
                latency_jitter_us: Annotated[int, typer.Option(min=0)] = 0,
                max_slippage_ticks: Annotated[int, typer.Option(min=0)] = 0,
                bootstrap: Annotated[int, typer.Option(
                    min=0, help="Also resample the per-period returns this many times.")] = 0,
                capital: Annotated[float, typer.Option(min=1.0)] = 1_000_000.0,
                ruin: Annotated[float, typer.Option(
                    min=0.0, max=1.0, help="Ruin: equity at or below this fraction.")] = 0.9
                ) -> None:
    """N seeded backtests (synthetic regimes, or a replay with perturbed latency and
    slippage) in parallel processes; percentiles of final P&L, drawdown and P(ruin)."""
    from api.backtest_report import monte_carlo_html
    from commands.backtest import make_strategy, parse_params
    from commands.monte_carlo import plan, run_all, summarise
    from domain.backtest_metrics import returns_of
    from domain.monte_carlo import bootstrap_returns, equity_from_returns
    from infrastructure.backtest_venue import simulate

    try:
        params = parse_params(param or [])
        make_strategy(strategy, params)
        specs = plan(runs, seed, strategy, params, capital=capital,
                     regimes=tuple(regime or ("bull", "flat", "crash")), steps=steps,
                     ticks_file=None if ticks is None else str(ticks),
                     latency_jitter_ns=latency_jitter_us * 1000,
                     max_slippage_ticks=max_slippage_ticks)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    with _progress() as bar:
        task = bar.add_task("Monte Carlo runs", total=len(specs))
        curves = run_all(specs, simulate, workers,
                         lambda done, _total: bar.update(task, completed=done))
    if bootstrap:
        returns = [r for c in curves for r in returns_of(c)]
        length = max(len(c) for c in curves) - 1
        curves = curves + [equity_from_returns(capital, rs)
                           for rs in bootstrap_returns(returns, bootstrap, seed, length)]
    outcomes, dist = summarise(curves, capital, ruin)
    summary = {**dist._asdict(), "seed": seed, "strategy": strategy,
               "runs_detail": [{**s._asdict(), **o._asdict()}
                               for s, o in zip(specs, outcomes, strict=False)]}
    _write(out, "monte_carlo", summary, monte_carlo_html(summary,
                                                         [o.final_pnl for o in outcomes]))
    p = dist.pnl_percentiles
    typer.echo(f"{dist.runs} runs: P&L p5 {p['p5']:,.2f} p50 {p['p50']:,.2f} "
               f"p95 {p['p95']:,.2f}; P(ruin) {dist.probability_of_ruin:.3f}")
    typer.echo(f"report: {out / 'monte_carlo.html'}")


@backtest_app.command("walk-forward")
def walk_forward_cmd(ticks: TicksOpt, strategy: StrategyOpt, out: OutOpt,
                     grid: Annotated[list[str], typer.Option(
                         help="k=v1,v2,... a parameter's values; repeatable.")],
                     param: ParamOpt = None, seed: SeedOpt = 1,
                     period_s: Annotated[int, typer.Option(min=1)] = 60,
                     in_sample: Annotated[int, typer.Option(min=2, help="Periods.")] = 300,
                     out_of_sample: Annotated[int, typer.Option(min=2, help="Periods.")] = 100,
                     score: Annotated[str, typer.Option(help="Metric to optimise.")] = "sharpe",
                     capital: Annotated[float, typer.Option(min=1.0)] = 1_000_000.0) -> None:
    """Rolling in-sample grid search, out-of-sample evaluation on the next window."""
    from api.backtest_report import walk_forward_html
    from commands.backtest import BacktestConfig, parse_params
    from commands.walk_forward import walk_forward
    from infrastructure.backtest_venue import evaluator, read_ticks_csv

    try:
        fixed = parse_params(param or [])
        space: dict[str, list[Any]] = {k: [v] for k, v in fixed.items()}
        for spec in grid:
            key, _, values = spec.partition("=")
            space[key] = [parse_params([f"{key}={v}"])[key] for v in values.split(",")]
        data = list(read_ticks_csv(ticks))
        config = BacktestConfig(capital=capital, sample_ns=period_s * 1_000_000_000)
        with _progress() as bar:
            task = bar.add_task("walk-forward backtests", total=None)
            rep = walk_forward(data, space, evaluator(strategy, config, seed),
                               period_ns=period_s * 1_000_000_000, in_sample=in_sample,
                               out_of_sample=out_of_sample, capital=capital, score=score,
                               progress=lambda d, t: bar.update(task, completed=d, total=t))
    except ValueError as exc:
        raise _fail(str(exc)) from None
    summary = {
        "strategy": strategy, "score": score, "mean_in_sample": rep.mean_in_sample,
        "mean_out_of_sample": rep.mean_out_of_sample,
        "out_of_sample_stderr": rep.out_of_sample_stderr, "degradation": rep.degradation,
        "efficiency": rep.efficiency, "stitched_equity": rep.stitched_equity,
        "windows": [{"window": w.window.number, "in_sample_span": w.window.in_sample,
                     "out_of_sample_span": w.window.out_of_sample,
                     "best_params": w.best_params, "in_sample": _finite(w.in_sample_score),
                     "out_of_sample": _finite(w.out_of_sample_score),
                     "out_of_sample_pnl": w.out_of_sample_pnl} for w in rep.windows],
    }
    _write(out, "walk_forward", summary, walk_forward_html(summary))
    typer.echo(f"{len(rep.windows)} windows: mean {score} in sample {rep.mean_in_sample:.2f}, "
               f"out of sample {rep.mean_out_of_sample:.2f} ± {rep.out_of_sample_stderr:.2f}; "
               f"degradation {rep.degradation:.2f}")
    typer.echo(f"report: {out / 'walk_forward.html'}")


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None

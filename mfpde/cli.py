"""The ``mfpde`` command: ``run`` a config, ``study`` a sweep, ``plot``, ``animate`` and
``info`` a file, ``example`` configs.

Bad input (config, arguments, files) is one line on stderr and exit status 2; an
interrupted run (SIGINT, SIGTERM) stops at the next solver step, leaves its file with
status "interrupted" and exits 130 / 143 after saying how to resume it.  The signal
handlers are installed before anything heavy is imported: a signal at any moment after
the interpreter starts (during the imports, doubled, while a study closes its workers)
ends the command with one line and 128 + the first signal's number.
"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import signal
import sys

from ._version import __version__

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
#: OSErrors that come from the name given, not from the machine (exit 2, not 1).
_BAD_NAME_ERRNOS = {errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS,
                    errno.ELOOP, errno.EEXIST, errno.ENOENT, errno.EINVAL}


class _Stopped(BaseException):
    """A run stopped by SIGINT or SIGTERM; the writer closes the file as "interrupted"."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class _StopRequests:
    """Signal handlers that only record the request: the run stops at the next step
    boundary, never inside an HDF5 write.  A second signal stops at once.  ``_Stopped``
    is raised at most once (by ``check`` or by a second signal), so a third signal, or a
    second one while the command is already stopping, cannot interrupt its closing words."""

    def __init__(self):
        self.signum = None
        self.raised = False

    def __call__(self, signum, frame):
        if self.signum is None:
            self.signum = signum
            return
        self._raise()

    def check(self, *_):
        if self.signum is not None:
            self._raise()

    def _raise(self):
        if not self.raised:
            self.raised = True
            raise _Stopped(self.signum)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mfpde", description="Mean-field self-attention dynamics on the sphere."
    )
    parser.add_argument("--version", action="version", version=f"mfpde {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a config file and write its HDF5 result")
    run.add_argument("config", metavar="CONFIG", help="a .toml or .yaml config file")
    run.add_argument("-o", "--output", metavar="OUT.h5", help="result file (default: output.path)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set model.beta=50 (repeatable)")
    run.add_argument("--resume", action="store_true", help="continue an interrupted run from its last snapshot")
    run.add_argument("--force", action="store_true", help="overwrite an existing result file")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    study = sub.add_parser("study", help="run every combination of a config's [study] sweep")
    study.add_argument("config", metavar="CONFIG")
    study.add_argument("-o", "--output", metavar="OUT.h5", help="study index file (default: output.path)")
    study.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    where = study.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=1, metavar="N",
                       help="N > 1: run in a private pool of N worker processes on this machine")
    where.add_argument("--scheduler", metavar="ADDRESS", help="submit the runs to an existing Dask scheduler")
    study.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    plot = sub.add_parser("plot", help="draw a figure of a run or study file")
    plot.add_argument("result", metavar="RESULT.h5")
    plot.add_argument("-o", "--output", metavar="FIG.png", help="PNG, PDF or SVG (default: RESULT_KIND.png)")
    plot.add_argument("--kind", choices=("density", "trajectories", "distance", "energy", "diagnostics", "rate",
                                         "phase"))
    plot.add_argument("--series", action="append", metavar="NAME",
                      help="with --kind diagnostics: a stored series to draw (repeatable; default: all)")
    plot.add_argument("--diagnostic", metavar="NAME",
                      help="with --kind phase: the series on the phase diagram (default: clustered_fraction)")

    info = sub.add_parser("info", help="summarise a result file")
    info.add_argument("result", metavar="RESULT.h5")

    example = sub.add_parser("example", help="list the shipped example configs, or write one")
    example.add_argument("name", nargs="?", metavar="NAME", help="an example (without NAME: list them)")
    example.add_argument("-o", "--output", metavar="FILE.toml",
                         help="where to write it (default: NAME.toml here; '-' prints it)")
    example.add_argument("--force", action="store_true", help="overwrite an existing file")

    animate = sub.add_parser("animate", help="an animation of a run file (GIF or MP4), one frame per snapshot")
    animate.add_argument("result", metavar="RESULT.h5")
    animate.add_argument("-o", "--output", metavar="OUT.gif",
                         help="OUT.gif (Pillow) or OUT.mp4 (ffmpeg) (default: RESULT.gif)")
    animate.add_argument("--fps", type=float, default=8.0, help="frames per second (default 8)")
    animate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def _progress_bar(t_end: float, quiet: bool):
    """A tqdm bar over model time on a terminal; None in a pipe or with --quiet."""
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    # a terminal that reports no size (0 x 0) gets 80 x 24, where tqdm would hide the bar
    size = shutil.get_terminal_size(fallback=(80, 24))
    return tqdm(total=t_end, unit="t", file=sys.stderr, ncols=size.columns, nrows=size.lines,
                bar_format="{l_bar}{bar}| t = {n:.3g}/{total:.3g} [{elapsed}<{remaining}]")


def _cmd_run(args, stop: _StopRequests) -> int:
    from .config import load_config
    from .runner import run

    stop.check()  # a signal during the imports
    config = load_config(args.config, args.overrides)
    bar = _progress_bar(config.solver.t_end, args.quiet)
    last = [0.0]

    def on_step(t):
        if bar is not None:
            bar.update(t - last[0])
            last[0] = t
        stop.check()

    path = args.output or config.output.path
    from .io import WriteError, load

    before = _identity(path)
    try:
        result = run(config, output=path, resume=args.resume, force=args.force, on_step=on_step)
    except (KeyboardInterrupt, _Stopped) as exc:
        if bar is not None:
            bar.close()
        try:
            if not args.resume and before is not None and _identity(path) == before:
                raise FileNotFoundError(path)  # an existing file that the new run never replaced
            done = load(path)
            where = f"{done.n_snapshots} snapshots up to t = {done.times[-1]:.6g}" if done.n_snapshots else "no snapshots"
            print(f"mfpde: interrupted; {path} keeps {where}; continue with --resume", file=sys.stderr)
        except FileNotFoundError:  # before the first snapshot: nothing was created or replaced
            state = "was left as it was" if before is not None else "was not written"
            print(f"mfpde: interrupted before the first snapshot; {path} {state}", file=sys.stderr)
        except (OSError, ValueError):
            print(f"mfpde: interrupted; {path} keeps no readable snapshots", file=sys.stderr)
        signum = getattr(exc, "signum", signal.SIGINT)
        return 128 + int(signum)
    except WriteError as exc:  # a full disk, a file-size limit: the file keeps its finished snapshots
        if bar is not None:
            bar.close()
        print(f"mfpde: run failed: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_FAILED
    if bar is not None:
        bar.close()
    print(f"{path}: {result.n_snapshots} snapshots, t = 0 .. {result.times[-1]:.6g}, status {result.status}")
    return 0


def _identity(path):
    """(device, inode, mtime) of an existing file, None otherwise (a new run file is a new inode)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


def _cmd_study(args, stop: _StopRequests) -> int:
    import numpy as np

    from .config import load_config
    from .study import n_runs, run_study

    stop.check()  # a signal during the imports
    config = load_config(args.config, args.overrides)
    path = args.output or config.output.path
    from .options import OutputOptions
    from .runner import check_output

    OutputOptions(path=path)  # a usable file name (no NUL, not too long)
    check_output(config, path, study=True)
    total = n_runs(config)  # run_study checks every run before any work
    stop.check()
    bar = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        size = shutil.get_terminal_size(fallback=(80, 24))
        bar = tqdm(total=total, unit="run", file=sys.stderr, ncols=size.columns, nrows=size.lines)

    def on_run_done(row):
        if bar is not None:
            bar.update(1)
        if row.get("note"):
            print(f"mfpde: {row['run_id']} {row['values']}: {row['note']}", file=sys.stderr)
        if row["status"] == "failed":
            print(f"mfpde: {row['run_id']} {row['values']} failed: {row['error']}", file=sys.stderr)
        stop.check()

    try:
        study = run_study(config, output=path, workers=args.workers, scheduler=args.scheduler,
                          on_run_done=on_run_done, on_step=stop.check)
    except (KeyboardInterrupt, _Stopped) as exc:
        if bar is not None:
            bar.close()
        print(f"mfpde: study interrupted; finished runs are kept in {path} and are not recomputed "
              "when the same command is run again", file=sys.stderr)
        return 128 + int(getattr(exc, "signum", signal.SIGINT))
    except Exception:  # e.g. a run's config refused by run_study's check of every run
        if bar is not None:
            bar.close()
        raise
    if bar is not None:
        bar.close()
    print(study.table())
    rates = study.rates
    if rates.get("fit"):
        print(f"fit of log min_t {study.metric} against log {rates['fit']}: slope = {rates['slope']:.4f} "
              f"± {rates['slope_stderr']:.4f} (stderr); against log(log x / x): "
              f"{rates['slope_vs_log_ratio']:.4f} ± {rates['slope_vs_log_ratio_stderr']:.4f}")
    failed = int(np.sum(study.summary["status"] == "failed"))
    print(f"{path}: {len(study.summary['status'])} runs, {failed} failed")
    return EXIT_FAILED if failed else 0


def _headless_matplotlib():
    """The command writes files only: the Agg backend (set in the CLI process, never by the library)."""
    import matplotlib

    matplotlib.use("Agg")


def _cmd_plot(args, stop) -> int:
    _headless_matplotlib()
    from .plotting import is_study_file, plot_file, save_plot

    if not os.path.exists(args.result):
        raise FileNotFoundError(f"{args.result}: no such file")
    if args.series and args.kind != "diagnostics":
        raise ValueError("--series goes with --kind diagnostics")
    if args.diagnostic is not None and args.kind != "phase":
        raise ValueError("--diagnostic goes with --kind phase")
    out = args.output
    if out is not None and os.path.splitext(out)[1].lower() not in (".png", ".pdf", ".svg"):
        raise ValueError(f"-o must end in .png, .pdf or .svg, got {out!r}")
    kind = args.kind or ("rate" if is_study_file(args.result) else None)
    out = args.output or f"{os.path.splitext(args.result)[0]}_{kind or 'plot'}.png"
    from .options import _check_path

    try:
        _check_path("plot", "output", out)
    except ValueError as exc:
        raise ValueError(f"-o {str(exc).partition(' ')[2]}") from None
    directory = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"-o {out}: the directory {directory} does not exist")
    fig = plot_file(args.result, kind, args.series, args.diagnostic)
    print(save_plot(fig, out))
    return 0


def _cmd_info(args, stop) -> int:
    from .io import info

    print(info(args.result))
    return 0




def _cmd_example(args, stop) -> int:
    from ._examples import example_names, example_summary, example_text

    if args.name is None:
        if args.output is not None:
            raise ValueError("-o needs an example NAME (mfpde example NAME -o FILE)")
        names = example_names()
        width = max(len(n) for n in names)
        for name in names:
            print(f"{name:<{width}}  {example_summary(name)}")
        return 0
    text = example_text(args.name)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    out = args.output or f"{args.name}.toml"
    if os.path.isdir(out):
        raise IsADirectoryError(f"{out} is a directory; give a file name with -o")
    if os.path.exists(out) and not args.force:
        raise FileExistsError(f"{out} exists; pass --force to overwrite it")
    directory = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"-o: the directory {directory} does not exist")
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(f"{out}: the {args.name!r} example; run it with: mfpde run {out}")
    return 0


def _cmd_animate(args, stop) -> int:
    _headless_matplotlib()
    from .animation import animate_file

    if not os.path.exists(args.result):
        raise FileNotFoundError(f"{args.result}: no such file")
    out = args.output or f"{os.path.splitext(args.result)[0]}.gif"
    bar = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit="frame", file=sys.stderr)

    def on_frame(i, n):
        if bar is not None:
            bar.total = n
            bar.update(1)
        stop.check()

    try:
        path = animate_file(args.result, out, fps=args.fps, on_frame=on_frame)
    except (KeyboardInterrupt, _Stopped) as exc:
        print(f"mfpde: animation interrupted; {out} not written", file=sys.stderr)
        return 128 + int(getattr(exc, "signum", signal.SIGINT))
    finally:
        if bar is not None:
            bar.close()
    print(path)
    return 0


def _quiet_broken_pipe() -> int:
    """stdout's reader went away (``mfpde info x.h5 | head -1``): nothing more to say.

    stdout is pointed at /dev/null so the interpreter's final flush cannot fail again;
    the status is the one a process killed by SIGPIPE would have."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # pragma: no cover - stdout without a descriptor
        pass
    return 128 + 13


def _one_line(exc: BaseException) -> str:
    """The message of an error on one line; an OSError as "file: reason" without "[Errno n]"."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        text = f"{os.fsdecode(exc.filename)}: {exc.strerror}"
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc)
    return " ".join(text.split())


def main(argv=None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    Called with an explicit ``argv`` (from Python) it restores the previous signal handlers
    on return; as the program (``argv=None``) it ignores SIGINT and SIGTERM once its work
    is done, so that a late signal cannot kill it with a traceback or -15 while it exits.
    """
    stop = _StopRequests()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        args = _parser().parse_args(argv)
        commands = {"run": _cmd_run, "study": _cmd_study, "plot": _cmd_plot, "info": _cmd_info,
                    "example": _cmd_example, "animate": _cmd_animate}
        status = commands[args.command](args, stop)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return status
    except (KeyboardInterrupt, _Stopped) as exc:
        signum = int(getattr(exc, "signum", None) or stop.signum or signal.SIGINT)
        stop.raised = True
        print(f"mfpde: interrupted by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (ValueError, FileExistsError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
            PermissionError) as exc:
        print(f"mfpde: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # a name the system refuses is bad input; a failing disk is not
        print(f"mfpde: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT if exc.errno in _BAD_NAME_ERRNOS else EXIT_FAILED
    except (OverflowError, FloatingPointError) as exc:
        print(f"mfpde: run failed: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if argv is not None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        else:  # the program exits now: a late signal must not kill it (the interpreter's
            # finalization resets Python handlers to the default, not an ignored signal)
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

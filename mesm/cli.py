"""The ``mesm`` command: subcommands over the library (``mesm predict`` for now).

    mesm predict VIDEO --checkpoint runs/demo-mesm-p0.5/best.pt --text "I am so glad"
    mesm predict VIDEO --checkpoint FILE --segments talk.srt --format csv > emotions.csv

Each subcommand is a function that adds its parser (``add_<name>_command``) and a handler that
returns the exit status. User errors print one line ``error: ...`` to stderr and exit with 2, the
status argparse uses for bad arguments; heavy modules are imported only when a command runs, so
``mesm --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

USER_ERROR = 2

Handler = Callable[[argparse.Namespace], int]


def _error(message: str) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return USER_ERROR


def run_predict(args: argparse.Namespace) -> int:
    """Handler of ``mesm predict``."""
    from mesm.predict import PredictError, Predictor, format_prediction, read_srt, read_transcript

    try:
        text = args.text
        if args.transcript is not None:
            text = read_transcript(args.transcript)
        segments = read_srt(args.segments) if args.segments is not None else None
        predictor = Predictor(args.checkpoint, device=args.device, modalities=args.modalities)
        result = predictor.predict(
            args.video, segments=segments, text=text, side=args.side, audio=args.audio
        )
    except PredictError as error:
        return _error(str(error))
    print(format_prediction(result, args.format))
    return 0


def add_predict_command(commands: argparse._SubParsersAction) -> None:
    """``mesm predict VIDEO --checkpoint FILE [...]``."""
    parser = commands.add_parser(
        "predict",
        help="emotions of a video, whole or per subtitle segment",
        description=(
            "Classify the emotions of a video with a trained checkpoint: faces (MTCNN), mel "
            "chunks and tokens are built exactly as preprocessing builds them, and each class is "
            "decided at the threshold stored in the checkpoint."
        ),
    )
    parser.add_argument("video", help="video file (mp4, avi, mkv, webm, ...)")
    parser.add_argument("--checkpoint", required=True, help="best.pt or last.pt of a run")
    text = parser.add_mutually_exclusive_group()
    text.add_argument("--text", help="what is said in the whole video")
    text.add_argument("--transcript", metavar="FILE", help="text file: what is said in the video")
    text.add_argument(
        "--segments",
        metavar="FILE.srt",
        help="SRT subtitles: one prediction per cue, with its time span and text",
    )
    parser.add_argument(
        "--modalities",
        help="letters of t(ext), a(udio), v(ision) to use, a subset of the checkpoint's "
        "(e.g. av to predict without text with a dense fe2e checkpoint); default: all of them",
    )
    parser.add_argument(
        "--side",
        choices=["left", "right"],
        help="side-by-side two-person video (IEMOCAP layout): use this half of the frame and "
        "audio channel 0 (left) or 1 (right); default: whole frames, channels mixed",
    )
    parser.add_argument(
        "--audio",
        metavar="FILE",
        help="sound file (wav, flac, ogg) to use instead of the video's audio track",
    )
    parser.add_argument("--format", choices=["table", "json", "csv"], default="table")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.set_defaults(handler=run_predict)


COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (add_predict_command,)


def build_parser() -> argparse.ArgumentParser:
    """The ``mesm`` parser with every subcommand of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="mesm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mesm`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())

"""Getting and checking the media: ``emolib download cremad`` and ``emolib verify``."""
from __future__ import annotations

from .registry import command
from .types import positive_int

EXAMPLES_SHOWN = 5


@command("download", "download CREMA-D's media (each file verified against the release's SHA-256), or the pretrained backbones "
                     "for offline use (weights)")
def _download(parser):
    parser.add_argument("what", choices=("cremad", "weights"), help="cremad: the corpus's media; weights: an offline weights bundle")
    parser.add_argument("--to", required=True, metavar="DIR", help="cremad: where AudioWAV/, VideoFlash/ (and AudioMP3/) go; weights: "
                                                                  "the bundle's folder (voice/NAME, face/resnet50.safetensors)")
    parser.add_argument("--voice", default=None, metavar="NAME", help="weights: the voice backbone's hub name (default facebook/wav2vec2-base; "
                                                                     "e.g. microsoft/wavlm-base-plus)")
    parser.add_argument("--face", default=None, metavar="NAME", help="weights: the face ResNet whose ImageNet weights to fetch (default resnet50)")
    parser.add_argument("--parts", default="audio,video", help="any of audio, video, mp3, comma-separated (default audio,video)")
    parser.add_argument("--workers", type=positive_int, default=4, help="parallel transfers (threads; default 4)")
    parser.add_argument("--source", action="append", default=[], metavar="URL",
                        help="another base URL holding the release's relative paths (repeatable; tried after the built-in sources)")
    parser.add_argument("--no-builtin-sources", action="store_true", help="use only the --source URLs (a local mirror)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be fetched and its size, fetch nothing")

    def run(args):
        import sys

        from ..data.download import check_destination, download, dry_run_lines, licence_lines, sources_for, summary
        from ..data.transfer import PARTIAL_DIR
        from ..data.release import parse_parts

        if args.what == "weights":
            ignored = [flag for flag, used in (("--dry-run", args.dry_run), ("--source", args.source), ("--no-builtin-sources", args.no_builtin_sources),
                                               ("--parts", args.parts != "audio,video"), ("--workers", args.workers != 4)) if used]
            if ignored:
                from ..errors import EmolibError

                raise EmolibError(f"{', '.join(ignored)}: options of `emolib download cremad`, not of weights")
            return _weights(args)
        if args.voice or args.face:
            from ..errors import EmolibError

            raise EmolibError("--voice and --face choose what `emolib download weights` fetches")

        parts = parse_parts(args.parts)
        sources = sources_for(args.source, builtin=not args.no_builtin_sources)
        check_destination(args.to)  # a dry run checks it too: it promises what the real run will do
        for line in licence_lines(args.to):
            print(line)
        if args.dry_run:
            print("sources, in order: " + ", ".join(name for name, _ in sources))
            for line in dry_run_lines(args.to, parts):
                print(line)
            return 0
        try:
            result = download(args.to, parts, sources, args.workers)
        except KeyboardInterrupt:
            print(f"emolib download: interrupted; partial files are kept in {args.to}/{PARTIAL_DIR}: run the same command again "
                  "to continue", file=sys.stderr)
            return 130
        print(summary(result))
        if result["failed"]:
            shown = ", ".join(sorted(result["failed_files"])[:EXAMPLES_SHOWN])
            print(f"missing: {result['failed']:,} files (e.g. {shown}); run the same command again to continue, or add --source URL")
            return 1
        print(f"next: emolib verify {args.to} --hash (optional: every file was verified as it arrived), then emolib index {args.to}")
        return 0

    return run


def _weights(args) -> int:
    """``emolib download weights``: the voice backbone and the face ResNet's ImageNet weights into one folder, for offline use."""
    from ..errors import check_output_folder
    from ..models.backbones import DEFAULT_FACE_BACKBONE, DEFAULT_VOICE_BACKBONE
    from ..models.bundle import ENVIRONMENT, download_face, download_voice

    check_output_folder(args.to, f"--to {args.to}")
    voice = download_voice(args.to, args.voice or DEFAULT_VOICE_BACKBONE)
    face = download_face(args.to, args.face or DEFAULT_FACE_BACKBONE)
    print(f"voice backbone: {voice}\nface weights: {face}")
    print(f"offline: --backbone {voice} --face-weights {face} (emolib doctor --weights {args.to}, or {ENVIRONMENT}={args.to})")
    return 0


@command("verify", "compare a local CREMA-D copy with the release's file list (missing, Git LFS pointers, sizes, SHA-256)")
def _verify(parser):
    parser.add_argument("data", help="the CREMA-D folder holding AudioWAV/ and VideoFlash/")
    parser.add_argument("--parts", default="audio,video", help="any of audio, video, mp3 (default audio,video)")
    parser.add_argument("--hash", action="store_true", help="also compare every file's SHA-256 (reads all 3 GB)")

    def run(args):
        from ..data.release import parse_parts, verify
        from ..data.scan import lfs_message

        result = verify(args.data, parse_parts(args.parts), hashed=args.hash)
        for problem, paths in result.problems.items():
            if paths:
                print(f"{problem}: {len(paths):,} (e.g. {', '.join(paths[:EXAMPLES_SHOWN])})")
        pointers = result.problems["lfs pointer"]
        if pointers:
            print(lfs_message(len(pointers), result.files, "release"))
        print(result.summary(args.data, args.hash))
        return 0 if result.complete else 1

    return run

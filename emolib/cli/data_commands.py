"""Getting and checking the media: ``emolib download cremad`` and ``emolib verify``."""
from __future__ import annotations

from .registry import command
from .types import positive_int

EXAMPLES_SHOWN = 5


@command("download", "download CREMA-D's media from the official sources, each file verified against the release's SHA-256")
def _download(parser):
    parser.add_argument("dataset", choices=("cremad",))
    parser.add_argument("--to", required=True, metavar="DIR", help="where AudioWAV/, VideoFlash/ (and AudioMP3/) go")
    parser.add_argument("--parts", default="audio,video", help="any of audio, video, mp3, comma-separated (default audio,video)")
    parser.add_argument("--workers", type=positive_int, default=4, help="parallel transfers (threads; default 4)")
    parser.add_argument("--source", action="append", default=[], metavar="URL",
                        help="another base URL holding the release's relative paths (repeatable; tried after the built-in sources)")
    parser.add_argument("--no-builtin-sources", action="store_true", help="use only the --source URLs (a local mirror)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be fetched and its size, fetch nothing")

    def run(args):
        import sys

        from ..data.download import PARTIAL_DIR, check_destination, download, dry_run_lines, licence_lines, sources_for, summary
        from ..data.release import parse_parts

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

"""``edgecodec repair``: check recordings and cut torn or damaged records out of them."""
from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "repair", help="check recordings and remove torn or damaged records",
        description="Verify every record of .ecr recordings (length and CRC). A torn last record, as a "
                    "killed server leaves, is cut off; damaged records elsewhere are removed by rewriting "
                    "the file. Intact frames are kept, except delta frames whose reference was lost to the "
                    "damage (they could never be decoded; each is listed). Exit codes: 0 all files intact or repaired, "
                    "1 a file could not be read or repaired, 2 usage.")
    p.add_argument("recordings", nargs="+", metavar="RECORDING", help=".ecr files, folders or glob patterns")
    p.add_argument("-n", "--dry-run", action="store_true", help="report only; change nothing")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(func=cmd_repair)


def cmd_repair(args) -> int:
    from edgecodec.export import expand_recordings
    from edgecodec.recording import RecordingError, repair

    rows, failed = [], 0
    for path in expand_recordings(args.recordings):
        try:
            report = repair(path, dry_run=args.dry_run)
        except (RecordingError, OSError) as exc:
            failed += 1
            rows.append({"path": str(path), "error": str(exc)})
            print(f"edgecodec repair: {path}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
            continue
        rows.append(report.as_dict())
        if not args.json:
            extra = "".join(f"\n  {d.describe()}" for d in report.damage)
            extra += "".join(f"\n  delta frame {f.sequence} at offset {f.offset}: its reference (frame "
                             f"{f.reference_sequence}) was lost to damage; dropped" for f in report.orphans)
            removed = f", {report.bytes_removed} bytes removed" if report.bytes_removed else ""
            print(f"{path}: {report.frames} intact frames, {report.action}{removed}{extra}")
    if args.json:
        print(json.dumps(rows, indent=1))
    return 1 if failed else 0

"""`prepare`: decode and cache the datasets once (`mfclr data`, `mfclr run`, a sweep) and
summarise them; what `mfclr data prepare` / `mfclr data info` print about a prepared dataset:
where it is, where its split came from, what decoding did, and (info) tracks per class and split
as a table."""

from __future__ import annotations

from typing import Any

from mfclr.config import Config
from mfclr.data.cache import summary_counts
from mfclr.data.datasets import Datasets
from mfclr.data.store import PreparedDataset

MAX_NAMED = 20  # files listed by name before a count


def class_counts(data: PreparedDataset) -> dict[str, dict[str, int]]:
    """class name -> split -> tracks of a PreparedDataset (unlabelled: one row, "(unlabelled)")."""
    names = data.label_names or ["(unlabelled)"]
    counts = {name: dict.fromkeys(data.splits, 0) for name in names}
    for split, sp in data.splits.items():
        for label in sp.labels:
            counts[names[max(int(label), 0)]][split] += 1
    return counts


def prepare(cfg: Config, datasets: Datasets | None = None) -> dict[str, Any]:
    """Decode and cache the probe (and, if separate, the pretraining) dataset, opened through
    `datasets` (the caller's, so later stages reuse them); return a summary per role: name,
    cache, classes, tracks per split, class_counts, stats."""
    datasets = datasets or Datasets()
    summary = {}
    for role in ("probe", "pretrain"):
        if role == "pretrain" and cfg.data.pretrain is None:
            continue
        data = datasets.get(cfg.data, role)
        summary[role] = {
            "name": data.name,
            "cache": str(data.cache_path),
            "classes": data.label_names,
            "tracks": {s: len(sp) for s, sp in data.splits.items()},
            "class_counts": class_counts(data),
            "stats": data.stats,
        }
    return summary


def count_table(counts: dict[str, dict[str, int]]) -> str:
    """A text table of tracks per class (rows) and split (columns), with totals."""
    splits = list(next(iter(counts.values()), {}))
    rows = [
        [name, *(str(c[s]) for s in splits), str(sum(c.values()))] for name, c in counts.items()
    ]
    totals = [sum(c[s] for c in counts.values()) for s in splits]
    rows.append(["total", *map(str, totals), str(sum(totals))])
    head = ["class", *splits, "total"]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    rule = ["-" * w for w in widths]
    return "\n".join(line(r) for r in [head, rule, *rows[:-1], rule, rows[-1]])


def format_summary(role: str, info: dict[str, Any], detailed: bool = False) -> str:
    """The lines for one dataset of `prepare`'s summary (`role`: probe/pretrain);
    `detailed` adds the class x split table and the files skipped or scaled down, by name."""
    st = info["stats"]
    tracks = ", ".join(f"{s} {n}" for s, n in info["tracks"].items())
    out = [
        f"{role}: {info['name']}  ({len(info['classes'])} classes; cache {info['cache']})",
        f"  root:   {st['root']}",
        f"  split:  {st.get('split_source') or 'as cached'}",
        f"  tracks: {tracks} ({sum(info['tracks'].values())} in all)",
        f"  {summary_counts(st)}; {st['seconds']:.0f} s of audio",
    ]
    if st.get("unlisted"):
        out.append(f"  {st['unlisted']} audio files are listed in no split file (not used)")
    if not detailed:
        return "\n".join(out)
    out += ["", *(f"  {row}" for row in count_table(info["class_counts"]).splitlines())]
    skipped = st["skipped_files"]
    out += [f"  skipped ({reason}): {path}" for path, reason, _ in skipped[:MAX_NAMED]]
    if len(skipped) > MAX_NAMED:
        out.append(f"  ... and {len(skipped) - MAX_NAMED} more skipped files")
    out += [f"  scaled down to full scale: {p}" for p in st.get("loud_files", [])[:MAX_NAMED]]
    return "\n".join(out)

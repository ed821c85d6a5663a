"""Build a held-out paragraph corpus for bench_cluster.py: Debian descriptions.

Debian's package descriptions (a summary line and a paragraph) labelled by
their archive section: 49 sections, groups that are broad regions of the
embedding space (a library, its development files and its documentation sit
side by side in three sections), unlike Brown's genres, whose paragraphs group
by neighbourhood. It reproduced the held-out gap of issue 22 (KMeans given the
true k above the layout's clusters).

The two files come from the Debian archive (a package registry):
``dists/bookworm/main/binary-amd64/Packages.xz`` (sections) and
``dists/bookworm/main/i18n/Translation-en.xz`` (long descriptions). Run once;
nothing is downloaded by the library or the tests::

    python benchmarks/debian_corpus.py --out ~/.cache/embedtasks-bench/debian

It writes ``balanced.json``/``balanced.npy`` (at most 160 descriptions per
section, 7,735 rows) and ``natural.json``/``natural.npy`` (7,000 rows drawn
at random from the same sections, in their natural proportions), embedded by
the bundled all-MiniLM-L6-v2 (``LocalEmbedder``, its default int8 model).
"""

from __future__ import annotations

import argparse
import collections
import json
import lzma
import urllib.request
from pathlib import Path

import numpy as np

MIRROR = "http://deb.debian.org/debian/dists/bookworm/main/"
FILES = {
    "Packages.xz": "binary-amd64/Packages.xz",
    "Translation-en.xz": "i18n/Translation-en.xz",
}
N_SECTIONS = 49
PER_SECTION = 160
NATURAL_ROWS = 7_000


def fetch(out: Path) -> None:
    for name, path in FILES.items():
        target = out / name
        if not target.is_file():
            print(f"downloading {MIRROR}{path}")
            urllib.request.urlretrieve(MIRROR + path, target)


def stanzas(path: Path):
    with lzma.open(path, "rt", encoding="utf-8") as handle:
        block: list[str] = []
        for line in handle:
            if line == "\n":
                if block:
                    yield block
                block = []
            else:
                block.append(line.rstrip("\n"))
        if block:
            yield block


def descriptions(out: Path) -> list[dict]:
    sections = {}
    for block in stanzas(out / "Packages.xz"):
        fields = dict(line.split(": ", 1) for line in block if ": " in line[:40])
        if "Section" in fields and "Description-md5" in fields:
            key = (fields["Package"], fields["Description-md5"])
            sections[key] = fields["Section"].split("/")[-1]
    rows = []
    for block in stanzas(out / "Translation-en.xz"):
        package = block[0].split(": ", 1)[1]
        md5 = block[1].split(": ", 1)[1]
        short = block[2].split(": ", 1)[1]
        body = " ".join(line.strip() for line in block[3:] if line.strip() != ".")
        section = sections.get((package, md5))
        if section:
            rows.append({"package": package, "section": section,
                         "text": f"{short}. {body}"})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    fetch(args.out)
    rows = descriptions(args.out)
    counts = collections.Counter(r["section"] for r in rows)
    kept = [s for s, _ in counts.most_common(N_SECTIONS)]
    by_section = collections.defaultdict(list)
    for row in rows:
        if row["section"] in kept:
            by_section[row["section"]].append(row)
    rng = np.random.default_rng(0)
    balanced = []
    for section in kept:
        pool = by_section[section]
        take = rng.choice(len(pool), min(PER_SECTION, len(pool)), replace=False)
        balanced += [pool[i] for i in sorted(take)]
    pool = [row for section in kept for row in by_section[section]]
    natural = [pool[i] for i in sorted(rng.choice(len(pool), NATURAL_ROWS, False))]
    from embedtasks import LocalEmbedder

    embedder = LocalEmbedder()
    for name, part in (("balanced", balanced), ("natural", natural)):
        X = embedder.fit_transform([row["text"] for row in part])
        np.save(args.out / f"{name}.npy", np.asarray(X, dtype=np.float32))
        (args.out / f"{name}.json").write_text(json.dumps(part))
        print(
            f"{name}: {len(part):,} rows, {len({r['section'] for r in part})} sections"
        )


if __name__ == "__main__":
    main()

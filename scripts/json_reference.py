"""simdjson's parse-only speed on the benchmark corpus: a reference point for kms-audit's
parse + extract stage (see docs/performance.md).

    python3 -m venv .venv && .venv/bin/pip install pysimdjson==7.0.2
    .venv/bin/python scripts/json_reference.py [corpus dir]

(Run scripts/bench first: it generates the corpus.) Every object is gunzipped into memory
first; only the parsing is timed, on one thread, fastest of 3 rounds. simdjson picks its
fastest kernel for this CPU at run time (AVX2 where there is AVX2) and parses every record
of every object into its tape. It extracts nothing, builds no columns and filters nothing,
so it is a lower bound on the time of any parser that reads all of these bytes.
"""
import glob
import gzip
import sys
import time

import simdjson

corpus = sys.argv[1] if len(sys.argv) > 1 else "/tmp/kms-audit-bench/corpus/trail"
files = sorted(glob.glob(f"{corpus}/**/*.json.gz", recursive=True))
if not files:
    sys.exit(f"no *.json.gz under {corpus}: run scripts/bench first")
raw = []
for f in files:
    with open(f, "rb") as fh:
        raw.append(gzip.decompress(fh.read()))
total = sum(map(len, raw))
parser = simdjson.Parser()
kernel = getattr(parser, "implementation", ("?", "?"))

records = 0
best = float("inf")
for _ in range(3):
    n = 0
    t = time.process_time()
    for b in raw:
        doc = parser.parse(b)
        n += len(doc["Records"])
        del doc
    best = min(best, time.process_time() - t)
    records = n
print(
    f"simdjson {kernel[0]} ({kernel[1]}): {len(raw)} objects, {total / 1e6:.0f} MB, "
    f"{records} records parsed in {best:.2f} s CPU: {total / best / 1e6:.0f} MB/s"
)

"""The README's annotate -> train -> score flow end to end, with a simulated annotator on synthetic shapes.

    python benchmarks/annotate_flow.py --out=/tmp/flow --answers=400

Draws `--images` shapes (the synthetic builder's drawing, latent strengths kept) into OUT/photos, starts
`relrank annotate` on them (active selection, the default features), answers `--answers` pairs per attribute
through the JSON API from the latent strengths (equal below the builder's tie threshold) once the ranker's
features are ready (a person answers far slower than this script), timing /api/next over HTTP, then runs `train.py --dataset=pairs_csv --recipe=scratch --attr=all` and `relrank score` as the README
says, from OUT. Prints the times, the run's test accuracy and where the ranking went.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def call(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def main() -> None:
    from relrank_datasets.synthetic.synthetic_dataset_builder import ATTRIBUTES, TIE_THRESHOLD, draw_shape

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="a new folder for the photos, the prepared data and the run")
    parser.add_argument("--images", type=int, default=150)
    parser.add_argument("--answers", type=int, default=400, help="answers per attribute (brightness and size)")
    args = parser.parse_args()
    photos = os.path.join(args.out, "photos")
    os.makedirs(photos)
    rng = np.random.default_rng(5)
    strengths = rng.uniform(size=(args.images, len(ATTRIBUTES)))
    names = [f"img_{k:04d}.png" for k in range(args.images)]
    for name, row in zip(names, strengths):
        draw_shape(row, rng).save(os.path.join(photos, name))
    server = subprocess.Popen([sys.executable, "-m", "relrank", "annotate", f"--images={photos}",
                               "--attr=brightness,size", "--no_browser", "--port=0"], stderr=subprocess.PIPE, text=True)
    base = None
    while base is None:
        line = server.stderr.readline()
        if not line:
            raise SystemExit("relrank annotate did not start")
        found = re.search(r"open (http://\S+)/", line)
        base = found.group(1) if found else None
    threading.Thread(target=server.stderr.read, daemon=True).start()  # keep its output flowing
    started = time.perf_counter()
    while call(f"{base}/api/status")["ranker"].startswith("computing"):  # a person answers far slower than this
        time.sleep(1)                                                    # script: let the features be ready first
    print(f"features of {args.images} images ready after {time.perf_counter() - started:.0f} s")
    waits = []
    started = time.perf_counter()
    for attr in ("brightness", "size"):
        k = ATTRIBUTES.index(attr)
        for _ in range(args.answers):
            t = time.perf_counter()
            pair = call(f"{base}/api/next?attr={attr}")
            waits.append(time.perf_counter() - t)
            diff = strengths[names.index(pair["a"]), k] - strengths[names.index(pair["b"]), k]
            label = "equal" if abs(diff) < TIE_THRESHOLD else ("more" if diff > 0 else "less")
            call(f"{base}/api/answer", dict(pair, label=label))
    status = call(f"{base}/api/status")
    server.terminate()
    server.wait()
    waits = np.array(waits) * 1000
    print(f"{2 * args.answers} answers in {time.perf_counter() - started:.0f} s; /api/next over HTTP: median "
          f"{np.median(waits):.1f} ms, 99th percentile {np.percentile(waits, 99):.1f} ms, max {waits.max():.1f} ms; "
          f"ranker at the end: {status['ranker']}; validation accuracy {status['val_accuracy']}")
    started = time.perf_counter()
    subprocess.run([sys.executable, os.path.join(REPO, "train.py"), "--dataset=pairs_csv", f"--manual_dir={photos}",
                    "--attr=all", "--recipe=scratch", f"--data_dir={os.path.join(args.out, 'tfds')}"],
                   cwd=args.out, check=True, stderr=subprocess.DEVNULL)
    summary = json.load(open(os.path.join(args.out, "runs", "pairs_csv", "all", "summary.json")))
    print(f"train.py: {time.perf_counter() - started:.0f} s, test accuracy {summary['test_accuracy']:.2f}% "
          f"{summary['test_accuracy_per_attr']}")
    subprocess.run([sys.executable, "-m", "relrank", "score", "--workdir=runs/pairs_csv/all", photos,
                    "--attr=brightness", "--out=ranking.csv", "--sheet=ranking.png"], cwd=args.out, check=True,
                   stderr=subprocess.DEVNULL)
    print(f"ranking: {os.path.join(args.out, 'ranking.csv')} and ranking.png")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Line coverage per crate and in total from an LCOV file; enforces the floors.

    coverage-summary.py LCOV_FILE [--markdown OUT.md] [--total-min 80] [--crate-min 70]

A file belongs to the crate whose directory holds it (the root package `autocrea` is `src/`).
Floors: the total, and each service crate (gateway, ai-service, deploy-service, project-service,
sandbox-service, service-runtime). Exit status 1 when one is missed.
"""
import argparse
import os
import sys

SERVICE_CRATES = [
    "gateway",
    "ai-service",
    "deploy-service",
    "project-service",
    "sandbox-service",
    "service-runtime",
]


def crate_of(path, root):
    rel = os.path.relpath(path, root)
    first = rel.split(os.sep, 1)[0]
    return "autocrea (all-in-one binary)" if first == "src" else first


def read_lcov(path, root):
    crates = {}
    source = None
    found = hit = 0
    with open(path, encoding="utf-8") as lcov:
        for line in lcov:
            line = line.strip()
            if line.startswith("SF:"):
                source, found, hit = line[3:], 0, 0
            elif line.startswith("DA:"):
                count = int(line[3:].split(",")[1])
                found += 1
                hit += count > 0
            elif line == "end_of_record" and source is not None:
                crate = crates.setdefault(crate_of(source, root), [0, 0])
                crate[0] += found
                crate[1] += hit
                source = None
    return crates


def percent(hit, found):
    return 100.0 * hit / found if found else 100.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("lcov")
    parser.add_argument("--root", default=os.getcwd())
    parser.add_argument("--markdown")
    parser.add_argument("--total-min", type=float, default=80.0)
    parser.add_argument("--crate-min", type=float, default=70.0)
    args = parser.parse_args()

    crates = read_lcov(args.lcov, os.path.abspath(args.root))
    if not crates:
        print("coverage: the LCOV file holds no source file", file=sys.stderr)
        return 1
    total_found = sum(found for found, _ in crates.values())
    total_hit = sum(hit for _, hit in crates.values())
    total = percent(total_hit, total_found)

    rows = ["| crate | lines | covered | line coverage |", "|---|---:|---:|---:|"]
    for name in sorted(crates):
        found, hit = crates[name]
        rows.append(f"| {name} | {found} | {hit} | {percent(hit, found):.1f} % |")
    rows.append(f"| **total** | {total_found} | {total_hit} | **{total:.1f} %** |")
    table = "\n".join(rows)
    print(table)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as out:
            out.write(table + "\n")

    failures = []
    if total < args.total_min:
        failures.append(f"total {total:.1f} % is under {args.total_min:g} %")
    for name in SERVICE_CRATES:
        found, hit = crates.get(name, (0, 0))
        if found == 0:
            failures.append(f"{name}: no line measured (was it built with coverage?)")
        elif percent(hit, found) < args.crate_min:
            failures.append(f"{name} {percent(hit, found):.1f} % is under {args.crate_min:g} %")
    for failure in failures:
        print(f"coverage: FAIL {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

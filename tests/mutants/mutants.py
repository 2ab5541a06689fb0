#!/usr/bin/env python3
"""The mutant list of tests/mutants/mutants.txt, for run.sh.

  mutants.py list FILE           one line per mutant: id<TAB>file<TAB>tests
  mutants.py apply FILE ID       applies mutant ID to its source file

A mutant is a block of "key: value" lines (blank lines between blocks):
  id:    a short name
  file:  the source file, from the repository root
  from:  text that occurs exactly once in the file, within one line
  to:    what replaces it (one line)
  tests: the test programs (build/tests/NAME) that should catch it
  why:   the bug it plants, in words
Everything after "key: " is taken literally (leading/trailing spaces of
from/to are kept apart from the one after the colon). Lines starting with #
are comments."""
import sys

KEYS = ("id", "file", "from", "to", "tests", "why")


def parse(path):
    mutants, cur = [], {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if line.startswith("#"):
                continue
            if not line.strip():
                if cur:
                    mutants.append(cur)
                cur = {}
                continue
            key, sep, value = line.partition(":")
            if not sep or key not in KEYS:
                sys.exit(f"{path}:{n}: expected one of {', '.join(KEYS)} followed by ':'")
            cur[key] = value[1:] if value.startswith(" ") else value
    if cur:
        mutants.append(cur)
    seen = set()
    for m in mutants:
        missing = [k for k in KEYS if k not in m]
        if missing:
            sys.exit(f"{path}: mutant {m.get('id', '?')}: missing {', '.join(missing)}")
        if m["id"] in seen:
            sys.exit(f"{path}: mutant id {m['id']} given twice")
        seen.add(m["id"])
    return mutants


def apply(m):
    with open(m["file"], encoding="utf-8") as f:
        text = f.read()
    count = text.count(m["from"])
    if count != 1:
        sys.exit(f"mutant {m['id']}: '{m['from']}' occurs {count} times in {m['file']}, not once")
    if "\n" in m["from"] or "\n" in m["to"]:
        sys.exit(f"mutant {m['id']}: from and to must be within one line")
    with open(m["file"], "w", encoding="utf-8") as f:
        f.write(text.replace(m["from"], m["to"]))


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("list", "apply"):
        sys.exit(__doc__)
    mutants = parse(sys.argv[2])
    if sys.argv[1] == "list":
        for m in mutants:
            print(f"{m['id']}\t{m['file']}\t{m['tests']}")
        return
    by_id = {m["id"]: m for m in mutants}
    if len(sys.argv) != 4 or sys.argv[3] not in by_id:
        sys.exit(f"no mutant {sys.argv[3:] and sys.argv[3]}")
    apply(by_id[sys.argv[3]])


if __name__ == "__main__":
    main()

"""Mutation check of the simulation test (`make mutants`): removes, one at a time, each per-source restriction
of the removal guard (src/core/guard.rs) and runs the simulation, which must catch every mutant. The source
and the simulation's kept seeds are restored after each run, whatever happens.

Each mutant names the code it replaces; a mutant whose code is no longer there fails the script, so a change
to the guard cannot make this check pass by default.
"""

import os
import shutil
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GUARD = os.path.join(REPO, "src", "core", "guard.rs")
SEEDS = os.path.join(REPO, "tests", "sim", "main.proptest-regressions")

MUTANTS = [
    ("the tag rule holds back every removal, not only the tag's grants",
     "Some(made) => s.same_kind(made) && (*s == made || !self.configured.contains(made)),",
     "Some(made) => matches!(s, Source::Tag(_)) || (s.same_kind(made) && (*s == made || !self.configured.contains(made))),"),
    ("a suspect source holds back every grant of its kind, also of names still configured",
     "Some(made) => s.same_kind(made) && (*s == made || !self.configured.contains(made)),",
     "Some(made) => s.same_kind(made),"),
    ("a suspect source holds back only the grants it made itself, not those of the name it replaced",
     "Some(made) => s.same_kind(made) && (*s == made || !self.configured.contains(made)),",
     "Some(made) => *s == made,"),
    ("a source holds back whatever it could have granted, whatever made the grant",
     "Some(made) => s.same_kind(made) && (*s == made || !self.configured.contains(made)),",
     "Some(_) => s.could_grant(g),"),
    ("a principal IAM no longer has is held back like any other",
     "if expiry || !self.sources.has(g) {",
     "if expiry {"),
    ("an expiry is held back by another source's emptiness",
     "if expiry || !self.sources.has(g) {",
     "if !self.sources.has(g) {"),
    ("an existing group with nobody in it looks mistyped",
     "Source::IamGroup(g) => !groups.iter().any(|x| names_match(g, x)),",
     "Source::IamGroup(g) => !principals.iter().any(|p| p.groups.iter().any(|m| names_match(g, m))),"),
    ("the guard compares permission-set names ignoring case",
     ".any(|p| p.permission_set().is_some_and(|x| names_match(set, x))),",
     ".any(|p| p.permission_set().is_some_and(|x| x.eq_ignore_ascii_case(set))),"),
]


def main():
    cases = os.environ.get("SIM_CASES", "2000")
    original = open(GUARD).read()
    seeds = open(SEEDS).read() if os.path.exists(SEEDS) else None
    missed = []
    try:
        for name, old, new in MUTANTS:
            if old not in original:
                sys.exit(f"mutant {name!r}: its code is no longer in guard.rs; update tests/sim/mutants.py")
            with open(GUARD, "w") as f:
                f.write(original.replace(old, new, 1))
            t0 = time.time()
            p = subprocess.run(["cargo", "test", "--locked", "--test", "sim", "histories"], cwd=REPO,
                               env={**os.environ, "SIM_CASES": cases}, capture_output=True, text=True)
            caught = p.returncode != 0 and "Test failed" in p.stdout + p.stderr
            first = next((line for line in (p.stdout + p.stderr).splitlines() if "Test failed" in line), "")
            print(f"{'caught' if caught else 'MISSED'} ({time.time() - t0:.0f} s): {name}\n    {first[:300]}",
                  flush=True)
            if not caught:
                missed.append(name)
    finally:
        with open(GUARD, "w") as f:
            f.write(original)
        if seeds is None:
            if os.path.exists(SEEDS):
                os.remove(SEEDS)
        else:
            with open(SEEDS, "w") as f:
                f.write(seeds)
    if missed:
        sys.exit(f"{len(missed)} mutant(s) not caught: {missed}")
    print(f"all {len(MUTANTS)} mutants caught")


if __name__ == "__main__":
    shutil.which("cargo") or sys.exit("cargo not found")
    main()

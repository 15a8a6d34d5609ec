"""Mutation check of the simulation test (`make mutants`): takes out, one at a time, each per-source restriction
of the removal guard (src/core/guard.rs), and each other fix of issue 23 the simulation stands for (the warm
cache, node roles, the wake-up, audit on landing), and runs the simulation, which must catch every mutant. The
source and the simulation's kept seeds are restored after each run, whatever happens.

Each mutant names the code it replaces; a mutant whose code is no longer there fails the script, so a change
to the code cannot make this check pass by default. With `--keep-seeds` the histories that caught the mutants
are added to the simulation's kept seeds, so that every later run replays them first; `--only TEXT` runs the
mutants whose name holds TEXT.
"""

import os
import shutil
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GUARD = "src/core/guard.rs"
SEEDS = os.path.join(REPO, "tests", "sim", "main.proptest-regressions")

MUTANTS = [
    (GUARD, "the tag rule holds back every removal, not only the tag's grants",
     "Some(made) => s.same_kind(made) && (*s == made || !self.configured.contains(made)),",
     "Some(made) => matches!(s, Source::Tag(_)) || (s.same_kind(made) && (*s == made || !self.configured.contains(made))),"),
    (GUARD, "a suspect source holds back every grant of its kind, also of names still configured",
     "Some(made) => s.same_kind(made) && (*s == made || !self.configured.contains(made)),",
     "Some(made) => s.same_kind(made),"),
    (GUARD, "a suspect source holds back only the grants it made itself, not those of the name it replaced",
     "Some(made) => s.same_kind(made) && (*s == made || !self.configured.contains(made)),",
     "Some(made) => *s == made,"),
    (GUARD, "a source holds back whatever it could have granted, whatever made the grant",
     "Some(made) => s.same_kind(made) && (*s == made || !self.configured.contains(made)),",
     "Some(_) => s.could_grant(g),"),
    (GUARD, "a principal IAM no longer has is held back like any other",
     "if expiry || !self.sources.has(g) {",
     "if expiry {"),
    (GUARD, "an expiry is held back by another source's emptiness",
     "if expiry || !self.sources.has(g) {",
     "if !self.sources.has(g) {"),
    (GUARD, "an existing group with nobody in it looks mistyped",
     "Source::IamGroup(g) => !groups.iter().any(|x| names_match(g, x)),",
     "Source::IamGroup(g) => !principals.iter().any(|p| p.groups.iter().any(|m| names_match(g, m))),"),
    (GUARD, "the guard compares permission-set names ignoring case",
     ".any(|p| p.permission_set().is_some_and(|x| names_match(set, x))),",
     ".any(|p| p.permission_set().is_some_and(|x| x.eq_ignore_ascii_case(set))),"),
    ("src/store/mod.rs", "a warm function trusts its cached CONFIG_MAP for events",
     "let stale = self.directory.cached_mode(cluster) == Some(AuthMode::ConfigMap);",
     "let stale = false;"),
    ("src/store/mod.rs", "a role is granted where the cluster's node rows could not be read",
     "state.node_rows_unknown = true;",
     "state.node_rows_unknown = false;"),
    ("src/core/plan.rs", "a grant of a role that became a node role stays",
     "p.changes.push(Change::Remove(grant_of(e)));\n            reason.push_str",
     "let _ = e;\n            reason.push_str"),
    ("src/adapters/wakeup.rs", "the wake-up runs two seconds after the expiry (within its minute, Scheduler may run it before)",
     "let secs = expiry.as_second().div_euclid(60) * 60 + 60;",
     "let secs = expiry.as_second() + 2;"),
    ("src/adapters/wakeup.rs", "a schedule that has run is kept as if it were still to come",
     "let pending = current.filter(|c| time_of(c).is_some_and(|t| t > now));",
     "let pending = current;"),
    ("src/core/reconcile.rs", "a landed write's record is not kept",
     "Self::lock(&self.records).push(record);",
     "let _ = record;"),
    # Issue 24: the policies protect admin-group members by their path; the function must agree.
    ("src/core/grants.rs", "an admin group's member is granted whatever its path",
     "if !p.path().starts_with(&settings.group_member_path) {",
     "if false {"),
]


def main():
    cases = os.environ.get("SIM_CASES", "2000")
    keep = "--keep-seeds" in sys.argv
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else ""
    mutants = [m for m in MUTANTS if only in m[1]]
    files = {f: open(os.path.join(REPO, f)).read() for f, *_ in MUTANTS}
    seeds = open(SEEDS).read() if os.path.exists(SEEDS) else ""
    found = []
    missed = []
    try:
        for path, name, old, new in mutants:
            original = files[path]
            if old not in original:
                sys.exit(f"mutant {name!r}: its code is no longer in {path}; update tests/sim/mutants.py")
            for f, text in files.items():
                with open(os.path.join(REPO, f), "w") as out:
                    out.write(text.replace(old, new, 1) if f == path else text)
            t0 = time.time()
            p = subprocess.run(["cargo", "test", "--locked", "--test", "sim", "histories"], cwd=REPO,
                               env={**os.environ, "SIM_CASES": cases}, capture_output=True, text=True)
            caught = p.returncode != 0 and "Test failed" in p.stdout + p.stderr
            first = next((line for line in (p.stdout + p.stderr).splitlines() if "Test failed" in line), "")
            print(f"{'caught' if caught else 'MISSED'} ({time.time() - t0:.0f} s): {name}\n    {first[:300]}",
                  flush=True)
            if not caught:
                missed.append(name)
            # The seed that caught this mutant; each mutant starts from the kept seeds only.
            now = open(SEEDS).read() if os.path.exists(SEEDS) else ""
            found += [line for line in now.splitlines() if line.startswith("cc ") and line not in seeds]
            with open(SEEDS, "w") as f:
                f.write(seeds)
    finally:
        for f, text in files.items():
            with open(os.path.join(REPO, f), "w") as out:
                out.write(text)
        with open(SEEDS, "w") as f:
            f.write(seeds)
    if keep and found:
        # Histories that tell a mutant from the product: replayed first by every run from now on.
        with open(SEEDS, "a") as f:
            for line in found:
                f.write(line.split(" # ")[0] + " # caught a mutant of tests/sim/mutants.py\n")
        print(f"kept {len(found)} seed(s) in {SEEDS}")
    if missed:
        sys.exit(f"{len(missed)} mutant(s) not caught: {missed}")
    print(f"all {len(mutants)} mutants caught")


if __name__ == "__main__":
    shutil.which("cargo") or sys.exit("cargo not found")
    main()

# Mutation testing: `make mutants` plants each one-line bug listed in
# tests/mutants/mutants.txt (derived metrics, phase accounting, resume and
# pairing), runs the test programs that should catch it, restores the file,
# and prints a table and "N of M caught". Slow (one rebuild and a few test
# programs per mutant): not part of `make test` or CI.
#   make mutants                     every mutant
#   make mutants MUTANTS="id id"     only those
MUTANTS ?=
.PHONY: mutants
# (the script runs make itself; not through $(MAKE), so `make -n` stays a
# dry run)
mutants: all
	@tests/mutants/run.sh $(MUTANTS)

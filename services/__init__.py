"""Services layer: everything the app does, with no Streamlit imports."""

import os

# The embedder and FAISS run on OpenMP, whose threads spin while they wait. When the app's threads compete for
# the cores (a background ingest beside a search, several sessions, a laptop doing other work), the spinning
# threads starve the one doing work: measured here under load, a query embedding took 560 ms (p50) spinning and
# 74 ms with passive waiting. It must be set before the first native library loads, hence here; an explicit
# setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

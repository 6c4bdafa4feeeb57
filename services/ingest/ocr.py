"""OCR through the Tesseract command-line program, when it is installed (it is optional).

We call the CLI rather than a Python wrapper: no extra dependency, and the image goes in on stdin and the text
comes out on stdout, so nothing is written to disk. Tesseract runs inside the parser process's limits (it
inherits the memory limit, and the parser's wall-clock timeout kills its process group).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess

# Traditional Chinese first: the app's first language; Tesseract treats the first language as the main one.
PREFERRED_LANGUAGES = ("chi_tra", "chi_sim", "eng")

# Tesseract separates CJK characters with spaces; between two CJK characters a space is never real.
_CJK = r"\u2e80-\u2fdf\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_CJK_SPACES = re.compile(rf"(?<=[{_CJK}])[ \t]+(?=[{_CJK}])")


@functools.cache
def available_languages() -> tuple[str, ...]:
    """The preferred languages Tesseract has data for; empty when Tesseract is not installed."""
    exe = shutil.which("tesseract")
    if exe is None:
        return ()
    try:
        done = subprocess.run([exe, "--list-langs"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return ()
    # The first line is a header ("List of available languages in ...:"), the rest one language per line.
    listed = {line.strip() for line in done.stdout.decode("utf-8", "replace").splitlines()[1:]}
    return tuple(lang for lang in PREFERRED_LANGUAGES if lang in listed)


def ocr_image(image: bytes, languages: tuple[str, ...], timeout_s: float) -> str:
    """Text of one image (PNG, JPEG or TIFF bytes). Raises OSError/subprocess errors on failure."""
    exe = shutil.which("tesseract")
    if exe is None or not languages:
        raise FileNotFoundError("tesseract is not installed")
    # One thread: the machine has few cores, and OpenMP threads each reserve memory under our address limit.
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    done = subprocess.run(
        [exe, "stdin", "stdout", "-l", "+".join(languages), "--psm", "3"],
        input=image,
        capture_output=True,
        timeout=max(1.0, timeout_s),
        check=False,
        env=env,
    )
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise OSError(f"tesseract failed: {detail[-1] if detail else done.returncode}")
    return clean_ocr_text(done.stdout.decode("utf-8", "replace"))


def clean_ocr_text(text: str) -> str:
    text = _CJK_SPACES.sub("", text)
    return "\n".join(line.rstrip() for line in text.splitlines()).strip()

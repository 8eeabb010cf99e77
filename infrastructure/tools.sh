#!/usr/bin/env bash
# Command-line tools the tests use besides the services: poppler-utils' pdftotext (the 15c3-5
# report's PDF is read back as text by tests/e2e/test_report_15c3_5.py).
#
# Idempotent: installs from Debian's packages only what is missing. Needs root for apt-get.
set -euo pipefail

die() { echo "tools.sh: $*" >&2; exit 1; }

if command -v pdftotext >/dev/null 2>&1; then
    exit 0
fi
[ "$(id -u)" -eq 0 ] || die "pdftotext is missing and installing poppler-utils needs root"
command -v apt-get >/dev/null 2>&1 || die "pdftotext is missing and there is no apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q -o DPkg::Lock::Timeout=600 poppler-utils >&2 9>&-
command -v pdftotext >/dev/null 2>&1 || die "apt-get install poppler-utils did not provide pdftotext"

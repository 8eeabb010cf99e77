#!/usr/bin/env bash
# Command-line tools the tests use besides the services, from Debian's packages:
#   poppler-utils' pdftotext: the 15c3-5 report's PDF is read back as text
#     (tests/e2e/test_report_15c3_5.py);
#   chromium and chromium-driver: the compliance page in a real headless browser
#     (tests/e2e/test_compliance_page.py, driven by Selenium).
#
# Idempotent: installs only what is missing (one apt-get update, then the packages). Needs
# root for apt-get.
set -euo pipefail

die() { echo "tools.sh: $*" >&2; exit 1; }

missing=()
command -v pdftotext >/dev/null 2>&1 || missing+=(poppler-utils)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
[ "${#missing[@]}" -eq 0 ] && exit 0

[ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}; installing them needs root"
command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and there is no apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >&2 9>&-
for tool in pdftotext chromium chromedriver; do
    command -v "$tool" >/dev/null 2>&1 || die "apt-get install ${missing[*]} did not provide $tool"
done

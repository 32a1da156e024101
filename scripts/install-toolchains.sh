#!/usr/bin/env bash
# Debian packages the evaluation sandbox and its benchmark languages need: bubblewrap
# (the sandbox), util-linux (setpriv, unshare), libseccomp2 (its syscall filter), and the compilers/runtimes of MultiPL-E's
# languages, plus chromium (the web playground's browser test drives it through Playwright).
# Best effort: without root or apt-get it only reports, and the harness then skips the
# languages it cannot run (never scoring them 0%), the playground test skips without chromium.
set -uo pipefail
want=(bubblewrap util-linux)
have() { command -v "$1" >/dev/null 2>&1; }
# libseccomp: the sandbox's seccomp filter (pyseccomp loads it); apt itself depends on it on Debian
ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || want+=(libseccomp2)
have g++ || want+=(g++)
have javac || want+=(default-jdk-headless)
have node || want+=(nodejs)
have tsc || want+=(node-typescript)
have go || want+=(golang-go)
have rustc || want+=(rustc)
have php || want+=(php-cli)
have mcs || want+=(mono-mcs)
have mono || want+=(mono-runtime)
[ -x /usr/bin/chromium ] || want+=(chromium)
have bwrap && want=("${want[@]/bubblewrap}")
missing=()
for p in "${want[@]}"; do [ -n "$p" ] && missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ] || [ "${missing[*]}" = "util-linux" ]; then
    echo "toolchains: all present"; exit 0
fi
if [ "$(id -u)" != 0 ] || ! have apt-get; then
    echo "toolchains: cannot install ${missing[*]} (needs root and apt-get); those languages (or the playground test) will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    && echo "toolchains: installed ${missing[*]}" \
    || echo "toolchains: apt-get could not install ${missing[*]}; those languages (or the playground test) will be skipped" >&2
exit 0

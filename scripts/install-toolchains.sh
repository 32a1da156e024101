#!/usr/bin/env bash
# Debian packages the evaluation sandbox and its benchmark languages need: bubblewrap
# (the sandbox), util-linux (setpriv, unshare), libseccomp2 (its syscall filter), and the
# compilers/runtimes of MultiPL-E's languages (see below for the two Debian lacks), plus
# chromium (the web playground's browser test drives it through Playwright).
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
# MultiPL-E's other languages (with the test libraries their checks load): Lua with luaunit,
# Ruby with test-unit, Perl's Test::Deep, R (~50 MiB installed), Racket (the biggest: ~390 MiB
# installed, ~100 MiB to download), Scala (2.11, on the JDK above) and D through LDC (~75 MiB;
# gdc would be ~130 MiB).
have lua5.4 || want+=(lua5.4)
[ -f /usr/share/lua/5.4/luaunit.lua ] || want+=(lua-unit)
have ruby || want+=(ruby)
have ruby && ruby -e 'require "test/unit"; Test::Unit::AutoRunner.need_auto_run = false' >/dev/null 2>&1 \
    || want+=(ruby-test-unit)
perl -MTest::Deep -e 1 >/dev/null 2>&1 || want+=(libtest-deep-perl)
have Rscript || want+=(r-base-core)
have racket || want+=(racket)
have scalac || want+=(scala)
have ldc2 || want+=(ldc)
# Not in Debian 12, so never installed here (the harness skips them by name): Julia has no
# package, and Debian's `swift` is OpenStack's object store, not the Swift language.
have julia || echo "toolchains: julia is not packaged in Debian 12 (install it from julialang.org to evaluate Julia)" >&2
have swiftc || echo "toolchains: Swift is not packaged in Debian 12; Debian's swift is OpenStack's (install it" \
    "from swift.org to evaluate Swift)" >&2
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

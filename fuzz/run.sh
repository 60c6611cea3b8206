#!/usr/bin/env bash
# Runs the fuzz targets with cargo-fuzz (libFuzzer + AddressSanitizer; needs a nightly
# toolchain: `rustup toolchain install nightly`, `cargo install cargo-fuzz`).
#
#   fuzz/run.sh [SECONDS] [TARGET...]     default: 60 s each of every target
#
# Each target starts from its corpus in fuzz/corpus/TARGET and works in
# fuzz/work/TARGET (not committed), so a long run does not flood the repository; a
# crash lands in fuzz/artifacts/TARGET and the run fails. To keep new coverage, merge
# the work corpus back: cargo +nightly fuzz cmin TARGET fuzz/corpus/TARGET
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
shift || true
targets=("$@")
((${#targets[@]})) || targets=(dns_message dns_tcp_stream config)
for t in "${targets[@]}"; do
    mkdir -p "work/$t"
    echo "fuzz: $t for ${secs}s"
    cargo +nightly fuzz run "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 -max_len=4096
done

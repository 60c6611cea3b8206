#!/usr/bin/env bash
# Runs the fuzz targets with cargo-fuzz (libFuzzer + AddressSanitizer; needs a nightly
# toolchain: `rustup toolchain install nightly`, `cargo install cargo-fuzz`).
#
#   fuzz/run.sh [SECONDS] [TARGET...]     fuzz: default 60 s each of every target
#   fuzz/run.sh replay [TARGET...]        run every input of the committed corpus once
#                                         (deterministic: what CI runs)
#
# Each target starts from its corpus in fuzz/corpus/TARGET and works in
# fuzz/work/TARGET (not committed), so a long run does not flood the repository; a
# crash lands in fuzz/artifacts/TARGET and the run fails. To keep new coverage, merge
# the work corpus back: cargo +nightly fuzz cmin TARGET fuzz/corpus/TARGET
set -euo pipefail
cd "$(dirname "$0")"
all=(dns_message dns_tcp_stream dns_differential config)
if [[ ${1:-} == replay ]]; then
    shift
    targets=("$@")
    ((${#targets[@]})) || targets=("${all[@]}")
    for t in "${targets[@]}"; do
        echo "fuzz: replaying corpus/$t ($(ls "corpus/$t" | wc -l) inputs)"
        cargo +nightly fuzz run "$t" "corpus/$t" -- -runs=0 -max_len=4096
    done
    exit 0
fi
secs="${1:-60}"
shift || true
targets=("$@")
((${#targets[@]})) || targets=("${all[@]}")
for t in "${targets[@]}"; do
    mkdir -p "work/$t"
    echo "fuzz: $t for ${secs}s"
    cargo +nightly fuzz run "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 -max_len=4096
done

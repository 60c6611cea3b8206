#!/usr/bin/env bash
# User-space instructions per answered query as the config grows: the config_scale
# bench's `respond_loop` (A queries cycling over up to 1,000 services) counted by
# valgrind --tool=callgrind with --toggle-collect, for 1 service and for each N. Exact
# and repeatable on a shared machine, unlike the timings. Usage:
#   benches/config_scale_instr.sh            # N = 1, 100, 1000, 10000
#   NS="1 10000" QUERIES=50000 benches/config_scale_instr.sh
set -euo pipefail
cd "$(dirname "$0")/.."
NS=${NS:-"1 100 1000 10000"}
QUERIES=${QUERIES:-20000}
cargo bench --bench config_scale --no-run 2>/dev/null
bin=$(ls -t target/release/deps/config_scale-* | grep -v '\.d$' | head -1)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
base=""
printf '| services | instructions per query | vs 1 service |\n|---:|---:|---:|\n'
for n in $NS; do
    CONFIG_SCALE_N=$n CONFIG_SCALE_INSTR=$QUERIES valgrind --tool=callgrind \
        --toggle-collect='*respond_loop*' --callgrind-out-file="$out/cg.$n" "$bin" \
        >/dev/null 2>"$out/log.$n"
    total=$(grep -E '^(summary|totals):' "$out/cg.$n" | head -1 | awk '{print $2}')
    per=$((total / QUERIES))
    [[ -z "$base" ]] && base=$per
    printf '| %s | %s | %s |\n' "$n" "$per" "$(python3 -c "print(f'{$per/$base:.3f}')")"
done

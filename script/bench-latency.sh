#!/usr/bin/env bash
# Latency of one job through the network against a plain `docker run` of the same image.
#
#   script/bench-latency.sh [runs]      (default 10)
#
# Starts `lilypad devnet`, warms up (the module's image is built by the first job), then, one
# after the other, times `runs` of
#   lilypad run lilysay:0.1.0 -i Message=hi   (start -> outputs on local disk and verified;
#                                               settlement after the challenge window is later)
#   docker run --rm --network none -v <tmp>:/outputs <the same image> hi
# and prints both medians and their difference. Uses the debug build that tools/demo builds
# unless LILYPAD_BIN points at another.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs="${1:-10}"
[[ -f tools/env.sh ]] || tools/bootstrap --docker >&2
# shellcheck source=/dev/null
source tools/env.sh
if [[ -z "${LILYPAD_BIN:-}" ]]; then
  cargo build --quiet --locked -p lilypad
  LILYPAD_BIN=target/debug/lilypad
fi
data_dir="$(mktemp -d /tmp/lilypad-bench.XXXXXX)"

"$LILYPAD_BIN" --data-dir "$data_dir" devnet --port 0 >"$data_dir/devnet.log" 2>&1 &
devnet_pid=$!
trap 'kill $devnet_pid 2>/dev/null || true; wait $devnet_pid 2>/dev/null || true; rm -rf "$data_dir"' EXIT
for _ in $(seq 1 600); do [[ -f "$data_dir/devnet.json" ]] && break; sleep 0.2; done
[[ -f "$data_dir/devnet.json" ]] || { cat "$data_dir/devnet.log" >&2; exit 1; }

now() { date +%s.%N; }
"$LILYPAD_BIN" --data-dir "$data_dir" run lilysay:0.1.0 -i Message=warmup >/dev/null
image=$(docker images --format '{{.Repository}}:{{.Tag}}' | grep '^lilypad/lilysay:0.1.0-' | head -n1)
outputs="$(mktemp -d)"
chmod 777 "$outputs"
docker run --rm --network none -v "$outputs:/outputs" "$image" warmup >/dev/null

lily=(); plain=()
for i in $(seq 1 "$runs"); do
  t0=$(now); "$LILYPAD_BIN" --data-dir "$data_dir" run lilysay:0.1.0 -i Message=hi >/dev/null; t1=$(now)
  lily+=("$(python3 -c "print($t1 - $t0)")")
  t0=$(now); docker run --rm --network none -v "$outputs:/outputs" "$image" hi >/dev/null; t1=$(now)
  plain+=("$(python3 -c "print($t1 - $t0)")")
done
rm -rf "$outputs"
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ml=$(median "${lily[@]}"); mp=$(median "${plain[@]}")
printf 'lilypad run (median of %d):  %.3f s\n' "$runs" "$ml"
printf 'docker run  (median of %d):  %.3f s\n' "$runs" "$mp"
printf 'overhead: %.0f ms (target: at most 500 ms)\n' "$(python3 -c "print(($ml - $mp) * 1000)")"

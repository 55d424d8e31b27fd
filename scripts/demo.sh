#!/usr/bin/env bash
# The main job, on this machine: start a box on 127.0.0.1 with the simulated bench, pin it,
# authorize a fresh key, and run the spec's full example against it, inspecting the bench
# from a "second terminal" while the script is paused, then resuming it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
work=$(mktemp -d)
export LAGER_CONFIG_DIR="$work/laptop" LAGER_BOX=mybox
# The simulated bench and the runs' monitors outlive the agent by design (a restarted agent
# takes them back); a demo that is over ends them too.
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; pkill -f "$work/box" 2>/dev/null; rm -rf "$work"' EXIT

lager-box serve --listen 127.0.0.1:0 --state-dir "$work/box" >"$work/ready" 2>"$work/box.log" &
for _ in $(seq 100); do grep -q listening "$work/ready" 2>/dev/null && break; sleep 0.1; done
cat "$work/ready"
port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$work/ready")

echo "\$ lager boxes add mybox --host 127.0.0.1 --port $port"
lager boxes add mybox --host 127.0.0.1 --port "$port" | sed 's/^/  /'
lager-box authorize --state-dir "$work/box" "$LAGER_CONFIG_DIR/id_ed25519.pub" | sed 's/^/  /'

echo; echo "=== terminal 1: lager python test.py --box mybox"
lager python examples/test.py 2>&1 | tee "$work/run.out" &
for _ in $(seq 200); do grep -q "(id " "$work/run.out" 2>/dev/null && break; sleep 0.1; done
id=$(grep -o '(id [^)]*)' "$work/run.out" | head -1 | cut -c5- | tr -d ')')

sleep 0.5
echo; echo "=== terminal 2, while it is paused"
for cmd in "supply supply2 state" "battery battery1 state" "adc adc4" "adc adc1" "nets"; do
  echo "\$ lager $cmd --box mybox"
  lager $cmd 2>&1 | sed 's/^/  /' || true
done
echo "\$ lager python --console $id --box mybox   (then: readings / read_adcs())"
printf 'readings\nread_adcs()\n' | lager python --console "$id" | sed 's/^/  /'
echo "\$ lager python --continue $id --box mybox"
lager python --continue "$id" | sed 's/^/  /'
wait %2 2>/dev/null || true
echo; echo "demo done"

#!/usr/bin/env bash
# Gas of one contract-created job, from real transaction receipts on a fresh Anvil.
#
#   script/gas-lifecycle.sh
#
# Deploys the contracts to a new Anvil, sets up the parties (not counted: a solver, a mediator
# the owner approved, a resource provider with collateral and an offer, the lilysay module, and
# the payee's one-time authorisation of the client contract), then runs one job's whole lifecycle with real
# transactions and prints each one's gasUsed:
#   approve (payee) -> ExampleClient.runLilysay -> runJob (client) -> matchJob (solver)
#   -> submitResult (provider) -> [challenge window passes] -> settle (anyone, calls the client back)
# and LONE_JOB_GAS=<n>. Then GAS_BATCH (default 10) jobs run the same way except that one
# settleMany settles them all, and, last, TOTAL_LIFECYCLE_GAS=<per-job gas of those>.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[[ -f tools/env.sh ]] || tools/bootstrap >&2
# shellcheck source=/dev/null
source tools/env.sh

port="${GAS_ANVIL_PORT:-$((20000 + RANDOM % 20000))}"
rpc="http://127.0.0.1:$port"
workdir="$(mktemp -d)"
anvil --port "$port" --silent >"$workdir/anvil.log" 2>&1 &
anvil_pid=$!
trap 'kill $anvil_pid 2>/dev/null || true; rm -rf "$workdir"' EXIT
for _ in $(seq 1 50); do cast chain-id --rpc-url "$rpc" >/dev/null 2>&1 && break; sleep 0.1; done

# The well-known Anvil accounts, in the roles the Lilypad reference's devnet gives them.
ADMIN_KEY=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80
SOLVER_KEY=0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a
MEDIATOR_KEY=0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6
PROVIDER_KEY=0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a
PAYEE_KEY=0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba
ANYONE_KEY=0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e
addr() { cast wallet address "$1"; }
SOLVER=$(addr $SOLVER_KEY); PROVIDER=$(addr $PROVIDER_KEY); PAYEE=$(addr $PAYEE_KEY); MEDIATOR=$(addr $MEDIATOR_KEY)

forge build --quiet
CHALLENGE_WINDOW=60 forge script script/Deploy.s.sol --rpc-url "$rpc" --private-key $ADMIN_KEY --broadcast --quiet >/dev/null
json() { python3 -c "import json,sys; print(json.load(open('deployments/31337.json'))['$1'])"; }
MARKET=$(json market); TOKEN=$(json token)
WINDOW=$(json challengeWindow); MATCH_T=$(json matchTimeout); MED_T=$(json mediationTimeout); CB_GAS=$(json callbackGas)

# send KEY TO SIG ARGS... -> prints gasUsed; fails loudly on a revert
send() {
  local key=$1; shift
  local out
  out=$(cast send --rpc-url "$rpc" --private-key "$key" --json "$@") || { echo "transaction failed: $*" >&2; exit 1; }
  python3 -c "import json,sys; r=json.loads(sys.argv[1]); assert r['status']=='0x1', r; print(int(r['gasUsed'],16), int(r['blockNumber'],16))" "$out"
}

PRICE=5000000000000000000 # 5 LP
FEE=$((PRICE / 20))       # the 5 % solver fee
PAYMENT=$((PRICE + FEE))  # the module's default payment: no refund left over
COLLATERAL=$(python3 -c "print($PRICE * 2)") # 2x the price (bash arithmetic stops at 2**63)
MODULE_ID=$(cast keccak "lilysay:0.1.0")
SPEC_HASH=$(cast keccak "lilysay module spec")
RUN_T=600

echo "== setup (not part of a job's lifecycle)"
send $ADMIN_KEY "$TOKEN" "faucet(address,uint256)" "$PROVIDER" 1000000000000000000000 >/dev/null
send $ADMIN_KEY "$TOKEN" "faucet(address,uint256)" "$PAYEE" 1000000000000000000000 >/dev/null
send $SOLVER_KEY "$MARKET" "registerSolver()" >/dev/null
send $ADMIN_KEY "$MARKET" "approveMediator(address,bool)" "$MEDIATOR" true >/dev/null
send $MEDIATOR_KEY "$MARKET" "registerMediator()" >/dev/null
send $ADMIN_KEY "$MARKET" "setDefaultMediators(uint64)" 1 >/dev/null
send $PROVIDER_KEY "$MARKET" "registerProvider(uint64)" 1 >/dev/null
send $PROVIDER_KEY "$TOKEN" "approve(address,uint256)" "$MARKET" 100000000000000000000 >/dev/null
send $PROVIDER_KEY "$MARKET" "deposit(address,uint256)" "$PROVIDER" 100000000000000000000 >/dev/null
send $ADMIN_KEY "$MARKET" "publishModule(string,string,(bytes32,bytes32,uint128,uint32,uint8,(uint32,uint32,uint32,uint32,uint8)))" \
  lilysay 0.1.0 "($SPEC_HASH,0x0000000000000000000000000000000000000000000000000000000000000000,$PAYMENT,$RUN_T,0,(1000,256,100,0,0))" >/dev/null
# the offer's terms: run windows of 10 s to 30 days, client callbacks up to 500,000 gas
send $PROVIDER_KEY "$MARKET" "setOffer(bytes32,(uint128,bool,uint32,uint32,uint32))" "$MODULE_ID" "($PRICE,true,10,2592000,500000)" >/dev/null
CLIENT=$(forge create contracts/examples/ExampleClient.sol:ExampleClient --rpc-url "$rpc" --private-key $ADMIN_KEY \
  --broadcast --json --constructor-args "$MARKET" | python3 -c "import json,sys; print(json.load(sys.stdin)['deployedTo'])")
# The client may escrow at most the payment per job, with a 60 s challenge-window floor; no total
# by default (as the authorisation before spending caps). GAS_CLIENT_CAP=<LP units> sets a total,
# which each job counts down: one storage write (~2,900 gas) more per job.
CAP="${GAS_CLIENT_CAP:-340282366920938463463374607431768211455}"
auth=$(send $PAYEE_KEY "$MARKET" "authorizeClient(address,(uint128,uint96,uint32))" "$CLIENT" "($CAP,$PAYMENT,60)" | cut -d' ' -f1)
echo "payee authorises the client contract (once per payee and client; total ${GAS_CLIENT_CAP:-none}): $auth gas"

JOB_T="(address,address,bytes32,uint128,uint64,uint40,uint32,uint32,uint32,uint32,uint32,address,address,address,uint128,uint128,uint128,uint8,uint40,bytes32,uint40,address,uint40,uint8)"
ZERO=0x0000000000000000000000000000000000000000
Z32=0x0000000000000000000000000000000000000000000000000000000000000000
CID=bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi
RESULT_HASH=$(cast keccak "outputs")
RESULT=$(cast keccak "$(cast abi-encode 'f(string,bytes32)' "$CID" "$RESULT_HASH")")
ts() { cast block "$1" -f timestamp --rpc-url "$rpc"; }
check() { # the Job we built must be the one the market stores
  local id=$1 job=$2 want got
  want=$(cast call --rpc-url "$rpc" "$MARKET" "jobHash(uint256)(bytes32)" "$id")
  got=$(cast call --rpc-url "$rpc" "$MARKET" "hashJob($JOB_T)(bytes32)" "$job")
  [[ "$want" == "$got" ]] || { echo "job $id: built Job does not match the stored hash" >&2; exit 1; }
}

# Runs one job up to a posted result: approve, runJob (through the client), matchJob,
# submitResult. Prints each gasUsed; leaves the job's gas in RUN_GAS and its Job in JOB.
to_result() {
  local id=$1 g total=0 bn
  read -r g bn < <(send $PAYEE_KEY "$TOKEN" "approve(address,uint256)" "$MARKET" $PAYMENT)
  printf '  %-44s %8d\n' "approve (payee)" "$g"; total=$((total + g))
  read -r g bn < <(send $PAYEE_KEY "$CLIENT" "runLilysay(string)" hi)
  printf '  %-44s %8d\n' "runLilysay -> runJob (payee, via the client)" "$g"; total=$((total + g))
  local created; created=$(ts "$bn")
  local terms="$CLIENT,$PAYEE,$MODULE_ID,$PAYMENT,1,$created,$MATCH_T,$RUN_T,$WINDOW,$MED_T,$CB_GAS,$ZERO"
  JOB="($terms,$ZERO,$ZERO,0,0,0,0,0,$Z32,0,$ZERO,0,1)"
  check "$id" "$JOB"
  read -r g bn < <(send $SOLVER_KEY "$MARKET" "matchJob(uint256,$JOB_T,address,uint8)" "$id" "$JOB" "$PROVIDER" 0)
  printf '  %-44s %8d\n' "matchJob (solver)" "$g"; total=$((total + g))
  local matched; matched=$(ts "$bn")
  local deal="$SOLVER,$PROVIDER,$PRICE,$FEE,$COLLATERAL,0,$matched"
  JOB="($terms,$deal,$Z32,0,$ZERO,0,2)"
  check "$id" "$JOB"
  read -r g bn < <(send $PROVIDER_KEY "$MARKET" "submitResult(uint256,$JOB_T,string,bytes32)" "$id" "$JOB" "$CID" "$RESULT_HASH")
  printf '  %-44s %8d\n' "submitResult (provider)" "$g"; total=$((total + g))
  local submitted; submitted=$(ts "$bn")
  JOB="($terms,$deal,$RESULT,$submitted,$ZERO,0,3)"
  check "$id" "$JOB"
  RUN_GAS=$total
}

pass_window() {
  cast rpc --rpc-url "$rpc" evm_increaseTime $((WINDOW + 1)) >/dev/null
  cast rpc --rpc-url "$rpc" evm_mine >/dev/null
}

settled() {
  local stored; stored=$(cast call --rpc-url "$rpc" "$MARKET" "jobHash(uint256)(bytes32)" "$1")
  [[ "$stored" == "$Z32" ]] || { echo "job $1 was not settled" >&2; exit 1; }
}

echo "== one job on its own"
to_result 1
pass_window
read -r g bn < <(send $ANYONE_KEY "$MARKET" "settle(uint256,$JOB_T,string,bytes32)" 1 "$JOB" "$CID" "$RESULT_HASH")
printf '  %-44s %8d\n' "settle + submitResults callback (anyone)" "$g"
settled 1
lone=$((RUN_GAS + g))
echo "  LONE_JOB_GAS=$lone"
completed=$(cast logs --rpc-url "$rpc" --address "$CLIENT" "JobCompleted(uint256 indexed,string,string)" --json \
  | python3 -c "import json,sys; print(len(json.load(sys.stdin)))")
[[ "$completed" == 1 ]] || { echo "the client was not called back" >&2; exit 1; }
echo "  the client contract received submitResults(1, \"1\", \"$CID\")"

N="${GAS_BATCH:-10}"
if [[ "$N" == 0 ]]; then exit 0; fi
echo "== $N jobs of one provider, settled together (settleMany)"
sum=0; items=()
for i in $(seq 2 $((N + 1))); do
  echo " job $i"
  to_result "$i"
  sum=$((sum + RUN_GAS))
  items+=("($i,$JOB,$CID,$RESULT_HASH)")
done
pass_window
list=$(IFS=,; echo "[${items[*]}]")
read -r g bn < <(send $ANYONE_KEY "$MARKET" "settleMany((uint256,$JOB_T,string,bytes32)[])" "$list")
printf '  %-44s %8d  (%d per job)\n' "settleMany of $N jobs + callbacks (anyone)" "$g" $((g / N))
for i in $(seq 2 $((N + 1))); do settled "$i"; done
per_job=$(((sum + g) / N))
echo "  per job: $per_job"
echo
echo "Lilypad reference (v1 contracts, same lifecycle, from its receipts): 2211306"
echo "LONE_JOB_GAS=$lone"
echo "TOTAL_LIFECYCLE_GAS=$per_job"

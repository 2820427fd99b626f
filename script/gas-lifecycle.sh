#!/usr/bin/env bash
# Gas of one contract-created job, from real transaction receipts on a fresh Anvil.
#
#   script/gas-lifecycle.sh
#
# Deploys the contracts to a new Anvil, sets up the parties (not counted, as one-time set-up: a
# solver, a mediator the owner approved, a resource provider with collateral and an offer, the
# lilysay module, the payee's one-time authorisation of the client contract, and the payee's
# one-time deposit into its market balance), then runs one job's whole lifecycle with real
# transactions and prints each one's gasUsed:
#   ExampleClient.runLilysay -> runJob (payment drawn from the payee's market balance) ->
#   matchJob (solver) -> submitResult (provider) -> [challenge window passes] -> settle (anyone,
#   calls the client back)
# and LONE_JOB_GAS=<n>. The same lone job paid the way a payee without a balance pays (its
# token `approve`, then runJob's `transferFrom`) follows: LONE_JOB_APPROVE_GAS=<n>. Then
# GAS_BATCH (default 10) prepaid jobs are created one by one (runJob each), matched by one
# matchMany (solver), posted by one submitMany (provider) and settled by one settleMany:
# BATCH_SETTLE_GAS=<per-job gas with only the settlement batched> and, last,
# TOTAL_LIFECYCLE_GAS=<per-job gas with matches, results and settlement batched>.
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
# a second payee that never deposits: pays each job by token approval
TOKEN_PAYEE_KEY=0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356
ANYONE_KEY=0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e
addr() { cast wallet address "$1"; }
SOLVER=$(addr $SOLVER_KEY); PROVIDER=$(addr $PROVIDER_KEY); PAYEE=$(addr $PAYEE_KEY); MEDIATOR=$(addr $MEDIATOR_KEY)
TOKEN_PAYEE=$(addr $TOKEN_PAYEE_KEY)

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
send $ADMIN_KEY "$TOKEN" "faucet(address,uint256)" "$TOKEN_PAYEE" 1000000000000000000000 >/dev/null
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
send $TOKEN_PAYEE_KEY "$MARKET" "authorizeClient(address,(uint128,uint96,uint32))" "$CLIENT" "($CAP,$PAYMENT,60)" >/dev/null
echo "payee authorises the client contract (once per payee and client; total ${GAS_CLIENT_CAP:-none}): $auth gas"
# The payee's prepaid balance: one approve and one deposit, for every job after (not per job).
DEPOSIT=100000000000000000000 # 100 LP: 19 jobs' payments
dep_approve=$(send $PAYEE_KEY "$TOKEN" "approve(address,uint256)" "$MARKET" $DEPOSIT | cut -d' ' -f1)
dep=$(send $PAYEE_KEY "$MARKET" "deposit(address,uint256)" "$PAYEE" $DEPOSIT | cut -d' ' -f1)
echo "payee deposits 100 LP into its market balance (once, for all its jobs: approve $dep_approve + deposit $dep gas)"

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

# The Job of job $1 as runJob created it in block $2 for payee $3.
created_job() {
  local created; created=$(ts "$2")
  TERMS="$CLIENT,$3,$MODULE_ID,$PAYMENT,1,$created,$MATCH_T,$RUN_T,$WINDOW,$MED_T,$CB_GAS,$ZERO"
  JOB="($TERMS,$ZERO,$ZERO,0,0,0,0,0,$Z32,0,$ZERO,0,1)"
  check "$1" "$JOB"
}

# Creates one job through the client (paid by PAYEE_KEY $1's balance, or by an approve first when
# $2 is "approve"). Prints each gasUsed; leaves the gas in RUN_GAS, the Job in JOB, its terms in TERMS.
create() {
  local key=$1 how=$2 g bn total=0 id
  if [[ "$how" == approve ]]; then
    read -r g bn < <(send "$key" "$TOKEN" "approve(address,uint256)" "$MARKET" $PAYMENT)
    printf '  %-44s %8d\n' "approve (payee)" "$g"; total=$((total + g))
  fi
  read -r g bn < <(send "$key" "$CLIENT" "runLilysay(string)" hi)
  printf '  %-44s %8d\n' "runLilysay -> runJob (payee, via the client)" "$g"; total=$((total + g))
  id=$(cast call --rpc-url "$rpc" "$MARKET" "jobCount()(uint256)")
  created_job "$id" "$bn" "$(addr "$key")"
  RUN_GAS=$total
}

# Runs job $1 (just created: JOB, TERMS) up to a posted result, one transaction per step. Prints
# each gasUsed; adds it to RUN_GAS; leaves its Job in JOB.
to_result() {
  local id=$1 g bn
  read -r g bn < <(send $SOLVER_KEY "$MARKET" "matchJob(uint256,$JOB_T,address,uint8)" "$id" "$JOB" "$PROVIDER" 0)
  printf '  %-44s %8d\n' "matchJob (solver)" "$g"; RUN_GAS=$((RUN_GAS + g))
  local matched; matched=$(ts "$bn")
  local deal="$SOLVER,$PROVIDER,$PRICE,$FEE,$COLLATERAL,0,$matched"
  JOB="($TERMS,$deal,$Z32,0,$ZERO,0,2)"
  check "$id" "$JOB"
  read -r g bn < <(send $PROVIDER_KEY "$MARKET" "submitResult(uint256,$JOB_T,string,bytes32)" "$id" "$JOB" "$CID" "$RESULT_HASH")
  printf '  %-44s %8d\n' "submitResult (provider)" "$g"; RUN_GAS=$((RUN_GAS + g))
  local submitted; submitted=$(ts "$bn")
  JOB="($TERMS,$deal,$RESULT,$submitted,$ZERO,0,3)"
  check "$id" "$JOB"
}

pass_window() {
  cast rpc --rpc-url "$rpc" evm_increaseTime $((WINDOW + 1)) >/dev/null
  cast rpc --rpc-url "$rpc" evm_mine >/dev/null
}

settled() {
  local stored; stored=$(cast call --rpc-url "$rpc" "$MARKET" "jobHash(uint256)(bytes32)" "$1")
  [[ "$stored" == "$Z32" ]] || { echo "job $1 was not settled" >&2; exit 1; }
}

# Runs job $1 alone from creation (by payee key $2, paid as $3 says) to settlement; prints
# each gasUsed and leaves the total in LONE.
lone_job() {
  local id=$1 g bn
  create "$2" "$3"
  to_result "$id"
  pass_window
  read -r g bn < <(send $ANYONE_KEY "$MARKET" "settle(uint256,$JOB_T,string,bytes32)" "$id" "$JOB" "$CID" "$RESULT_HASH")
  printf '  %-44s %8d\n' "settle + submitResults callback (anyone)" "$g"
  settled "$id"
  LONE=$((RUN_GAS + g)); LONE_SETTLE=$g
}

echo "== one job on its own, paid from the payee's market balance (deposited once: not counted)"
bal0=$(cast call --rpc-url "$rpc" "$MARKET" "balanceOf(address)(uint256)" "$PAYEE" | cut -d' ' -f1)
tok0=$(cast call --rpc-url "$rpc" "$TOKEN" "balanceOf(address)(uint256)" "$PAYEE" | cut -d' ' -f1)
lone_job 1 $PAYEE_KEY prepaid
lone=$LONE; lone_settle=$LONE_SETTLE
echo "  LONE_JOB_GAS=$lone"
bal1=$(cast call --rpc-url "$rpc" "$MARKET" "balanceOf(address)(uint256)" "$PAYEE" | cut -d' ' -f1)
tok1=$(cast call --rpc-url "$rpc" "$TOKEN" "balanceOf(address)(uint256)" "$PAYEE" | cut -d' ' -f1)
python3 -c "import sys; b0,b1,t0,t1,p=map(int,sys.argv[1:]); assert b0-b1==p and t0==t1, (b0,b1,t0,t1,p)" "$bal0" "$bal1" "$tok0" "$tok1" "$PAYMENT" \
  || { echo "the payment was not drawn from the payee's market balance" >&2; exit 1; }
echo "  the payment came off the payee's market balance; its token balance did not move"
completed=$(cast logs --rpc-url "$rpc" --address "$CLIENT" "JobCompleted(uint256 indexed,string,string)" --json \
  | python3 -c "import json,sys; print(len(json.load(sys.stdin)))")
[[ "$completed" == 1 ]] || { echo "the client was not called back" >&2; exit 1; }
echo "  the client contract received submitResults(1, \"1\", \"$CID\")"

echo "== one job on its own, paid by token approval (a payee with no market balance: approve + transferFrom)"
lone_job 2 $TOKEN_PAYEE_KEY approve
lone_approve=$LONE
echo "  LONE_JOB_APPROVE_GAS=$lone_approve"

N="${GAS_BATCH:-10}"
if [[ "$N" == 0 ]]; then
  echo "LONE_JOB_GAS=$lone"
  exit 0
fi
first=3; last=$((first + N - 1))
echo "== $N prepaid jobs: each created alone, then matched by one matchMany, posted by one submitMany, settled by one settleMany"
create_sum=0; declare -A TERMS_OF
for i in $(seq $first $last); do
  create $PAYEE_KEY prepaid
  create_sum=$((create_sum + RUN_GAS)); TERMS_OF[$i]=$TERMS
done
# the same steps one transaction each, for comparison, are the lone job's above
items=()
for i in $(seq $first $last); do items+=("($i,(${TERMS_OF[$i]},$ZERO,$ZERO,0,0,0,0,0,$Z32,0,$ZERO,0,1),$PROVIDER,0)"); done
read -r g_match bn < <(send $SOLVER_KEY "$MARKET" "matchMany((uint256,$JOB_T,address,uint8)[])" "[$(IFS=,; echo "${items[*]}")]")
printf '  %-44s %8d  (%d per job)\n' "matchMany of $N jobs (solver)" "$g_match" $((g_match / N))
matched=$(ts "$bn"); deal="$SOLVER,$PROVIDER,$PRICE,$FEE,$COLLATERAL,0,$matched"
items=()
for i in $(seq $first $last); do
  check "$i" "(${TERMS_OF[$i]},$deal,$Z32,0,$ZERO,0,2)"
  items+=("($i,(${TERMS_OF[$i]},$deal,$Z32,0,$ZERO,0,2),$CID,$RESULT_HASH)")
done
read -r g_submit bn < <(send $PROVIDER_KEY "$MARKET" "submitMany((uint256,$JOB_T,string,bytes32)[])" "[$(IFS=,; echo "${items[*]}")]")
printf '  %-44s %8d  (%d per job)\n' "submitMany of $N jobs (provider)" "$g_submit" $((g_submit / N))
submitted=$(ts "$bn")
items=()
for i in $(seq $first $last); do
  job="(${TERMS_OF[$i]},$deal,$RESULT,$submitted,$ZERO,0,3)"
  check "$i" "$job"
  items+=("($i,$job,$CID,$RESULT_HASH)")
done
pass_window
read -r g_settle bn < <(send $ANYONE_KEY "$MARKET" "settleMany((uint256,$JOB_T,string,bytes32)[])" "[$(IFS=,; echo "${items[*]}")]")
printf '  %-44s %8d  (%d per job)\n' "settleMany of $N jobs + callbacks (anyone)" "$g_settle" $((g_settle / N))
for i in $(seq $first $last); do settled "$i"; done
# only the settlement batched: each job's own runJob, matchJob and submitResult (the prepaid
# lone job's receipts above) and its share of one settleMany
settle_only=$(((lone - lone_settle) + g_settle / N))
per_job=$(((create_sum + g_match + g_submit + g_settle) / N))
echo "  per job, only settlement batched (runJob, matchJob, submitResult each alone): $settle_only"
echo "  per job, matches, results and settlement batched: $per_job"
echo
echo "Lilypad reference v1 (cited, not measured here: the figure this repository was seeded with for"
echo "  Lilypad-Tech/lilypad's v1 hardhat contracts, same lifecycle; ../shared/reference/lilypad-reference.md"
echo "  records only their deployment gas, no per-call figure): 2211306"
echo "LONE_JOB_GAS=$lone"
echo "LONE_JOB_APPROVE_GAS=$lone_approve"
echo "BATCH_SETTLE_GAS=$settle_only"
echo "TOTAL_LIFECYCLE_GAS=$per_job"

#!/usr/bin/env bash
# Gas of every transaction of one job's lifecycle, by role, on each path a job can take, from
# real transaction receipts on a fresh Anvil (the contract path with a client contract is
# script/gas-lifecycle.sh).
#
#   script/gas-paths.sh
#
# Paths (each one job, created by an EOA job creator the way `lilypad run --max-payment` does,
# with createJob):
#   run       approve, createJob, matchJob, submitResult, settle
#   uphold    approve, createJob, matchJob, submitResult, approve (challenger), challenge, upholdChallenge
#   reject    approve, createJob, matchJob, submitResult, approve (challenger), challenge, rejectChallenge
#   expire    approve, createJob, [match deadline passes] expireJob
#   timeout-result      approve, createJob, matchJob, [run deadline passes] timeoutResult
#   timeout-mediation   approve, createJob, matchJob, submitResult, approve, challenge,
#                       [mediation deadline passes] timeoutMediation
#   cancel    approve, createJob, cancelJob
#   run-prepaid   createJob (the payment off the creator's market balance, deposited once
#                 before: not counted), matchJob, submitResult, settle
# Refunds are credited to the creator's market balance; on the paths paid by approval the
# creator withdraws them (but 1 unit) after each path (not counted), so each of them pays by
# token approval.
# Prints, for each transaction, a line `GAS|<path>|<role>|<transaction>|<gasUsed>`, and for each
# path `TOTAL|<path>|<sum>`. Every transaction must succeed and every job must end (its stored
# hash cleared), or the script fails.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[[ -f tools/env.sh ]] || tools/bootstrap >&2
# shellcheck source=/dev/null
source tools/env.sh

workdir="$(mktemp -d)"
anvil --port 0 >"$workdir/anvil.log" 2>&1 &
anvil_pid=$!
trap 'kill $anvil_pid 2>/dev/null || true; rm -rf "$workdir"' EXIT
port=""
for _ in $(seq 1 100); do
  port=$(grep -oE 'Listening on [0-9.]+:[0-9]+' "$workdir/anvil.log" | grep -oE '[0-9]+$' || true)
  [[ -n "$port" ]] && break; sleep 0.1
done
[[ -n "$port" ]] || { cat "$workdir/anvil.log" >&2; echo "anvil did not start" >&2; exit 1; }
rpc="http://127.0.0.1:$port"
for _ in $(seq 1 50); do cast chain-id --rpc-url "$rpc" >/dev/null 2>&1 && break; sleep 0.1; done

ADMIN_KEY=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80
SOLVER_KEY=0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a
MEDIATOR_KEY=0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6
PROVIDER_KEY=0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a
PAYEE_KEY=0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba
ANYONE_KEY=0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e
addr() { cast wallet address "$1"; }
SOLVER=$(addr $SOLVER_KEY); PROVIDER=$(addr $PROVIDER_KEY); PAYEE=$(addr $PAYEE_KEY); ANYONE=$(addr $ANYONE_KEY)

forge build --quiet
CHALLENGE_WINDOW=60 forge script script/Deploy.s.sol --rpc-url "$rpc" --private-key $ADMIN_KEY --broadcast --quiet >/dev/null
json() { python3 -c "import json,sys; print(json.load(open('deployments/31337.json'))['$1'])"; }
MARKET=$(json market); TOKEN=$(json token)
WINDOW=$(json challengeWindow); MATCH_T=$(json matchTimeout); MED_T=$(json mediationTimeout)
MED_FEE=$(cast call --rpc-url "$rpc" "$MARKET" "mediatorFee()(uint128)" | cut -d' ' -f1)
BOND=$(cast call --rpc-url "$rpc" "$MARKET" "challengeBond()(uint128)" | cut -d' ' -f1)

send() { # KEY TO SIG ARGS... -> "gasUsed blockNumber"; fails loudly on a revert
  local key=$1; shift
  local out
  out=$(cast send --rpc-url "$rpc" --private-key "$key" --json "$@") || { echo "transaction failed: $*" >&2; exit 1; }
  python3 -c "import json,sys; r=json.loads(sys.argv[1]); assert r['status']=='0x1', r; print(int(r['gasUsed'],16), int(r['blockNumber'],16))" "$out"
}

PRICE=5000000000000000000
FEE=$((PRICE / 20))
PAYMENT=$((PRICE + FEE))
COLLATERAL=$(python3 -c "print($PRICE * 2)")
MODULE_ID=$(cast keccak "lilysay:0.1.0")
SPEC_HASH=$(cast keccak "lilysay module spec")
RUN_T=600

send $ADMIN_KEY "$TOKEN" "faucet(address,uint256)" "$PROVIDER" 1000000000000000000000 >/dev/null
send $ADMIN_KEY "$TOKEN" "faucet(address,uint256)" "$PAYEE" 1000000000000000000000 >/dev/null
send $ADMIN_KEY "$TOKEN" "faucet(address,uint256)" "$ANYONE" 1000000000000000000000 >/dev/null
send $SOLVER_KEY "$MARKET" "registerSolver()" >/dev/null
send $ADMIN_KEY "$MARKET" "approveMediator(address,bool)" "$(cast wallet address $MEDIATOR_KEY)" true >/dev/null
send $MEDIATOR_KEY "$MARKET" "registerMediator()" >/dev/null
send $ADMIN_KEY "$MARKET" "setDefaultMediators(uint64)" 1 >/dev/null
send $PROVIDER_KEY "$MARKET" "registerProvider(uint64)" 1 >/dev/null
send $PROVIDER_KEY "$TOKEN" "approve(address,uint256)" "$MARKET" 1000000000000000000000 >/dev/null
send $PROVIDER_KEY "$MARKET" "deposit(address,uint256)" "$PROVIDER" 1000000000000000000000 >/dev/null
send $ADMIN_KEY "$MARKET" "publishModule(string,string,(bytes32,bytes32,uint128,uint32,uint8,(uint32,uint32,uint32,uint32,uint8)))" \
  lilysay 0.1.0 "($SPEC_HASH,0x0000000000000000000000000000000000000000000000000000000000000000,$PAYMENT,$RUN_T,0,(1000,256,100,0,0))" >/dev/null
send $PROVIDER_KEY "$MARKET" "setOffer(bytes32,(uint128,bool,uint32,uint32,uint32))" "$MODULE_ID" "($PRICE,true,10,2592000,500000)" >/dev/null

JOB_T="(address,address,bytes32,uint128,uint64,uint40,uint32,uint32,uint32,uint32,uint32,address,address,address,uint128,uint128,uint128,uint8,uint40,bytes32,uint40,address,uint40,uint8)"
REQ_T="(string,string[],address,bytes32,uint128,uint64,uint32,uint32,uint32,uint32,uint32,address)"
ZERO=0x0000000000000000000000000000000000000000
Z32=0x0000000000000000000000000000000000000000000000000000000000000000
CID=bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi
RESULT_HASH=$(cast keccak "outputs")
RESULT=$(cast keccak "$(cast abi-encode 'f(string,bytes32)' "$CID" "$RESULT_HASH")")
ts() { cast block "$1" -f timestamp --rpc-url "$rpc"; }
check() {
  local id=$1 job=$2 want got
  want=$(cast call --rpc-url "$rpc" "$MARKET" "jobHash(uint256)(bytes32)" "$id")
  got=$(cast call --rpc-url "$rpc" "$MARKET" "hashJob($JOB_T)(bytes32)" "$job")
  [[ "$want" == "$got" ]] || { echo "job $id: built Job does not match the stored hash" >&2; exit 1; }
}
ended() {
  local stored; stored=$(cast call --rpc-url "$rpc" "$MARKET" "jobHash(uint256)(bytes32)" "$1")
  [[ "$stored" == "$Z32" ]] || { echo "job $1 did not end" >&2; exit 1; }
}
warp() { cast rpc --rpc-url "$rpc" evm_increaseTime "$1" >/dev/null; cast rpc --rpc-url "$rpc" evm_mine >/dev/null; }

PATH_NAME=""; PATH_TOTAL=0; NEXT_ID=0
row() { # ROLE TX GAS
  printf 'GAS|%s|%s|%s|%s\n' "$PATH_NAME" "$1" "$2" "$3"
  PATH_TOTAL=$((PATH_TOTAL + $3))
}
begin() { PATH_NAME=$1; PATH_TOTAL=0; NEXT_ID=$((NEXT_ID + 1)); ID=$NEXT_ID; }
finish() {
  ended "$ID"; printf 'TOTAL|%s|%s\n' "$PATH_NAME" "$PATH_TOTAL"
  local left; left=$(cast call --rpc-url "$rpc" "$MARKET" "balanceOf(address)(uint256)" "$PAYEE" | cut -d' ' -f1)
  # the refund out but 1 unit, so the next path pays by approval (with its balance slot in use,
  # as a job creator's is once it has been refunded anything)
  if [[ "$PATH_NAME" != run-prepaid && "$left" != 0 && "$left" != 1 ]]; then
    send $PAYEE_KEY "$MARKET" "withdraw(uint256,address)" "$(python3 -c "print($left - 1)")" "$PAYEE" >/dev/null
  fi
}

create() { # [approve +] createJob by the job creator; sets TERMS and JOB (Open)
  local g bn created
  if [[ "$PATH_NAME" != run-prepaid ]]; then
    read -r g bn < <(send $PAYEE_KEY "$TOKEN" "approve(address,uint256)" "$MARKET" $PAYMENT); row "job creator" "approve" "$g"
  fi
  read -r g bn < <(send $PAYEE_KEY "$MARKET" "createJob($REQ_T)" "(lilysay:0.1.0,[Message=hi],$PAYEE,$Z32,$PAYMENT,0,0,0,0,0,0,$ZERO)")
  row "job creator" "createJob" "$g"
  created=$(ts "$bn")
  TERMS="$PAYEE,$PAYEE,$MODULE_ID,$PAYMENT,1,$created,$MATCH_T,$RUN_T,$WINDOW,$MED_T,0,$ZERO"
  JOB="($TERMS,$ZERO,$ZERO,0,0,0,0,0,$Z32,0,$ZERO,0,1)"; check "$ID" "$JOB"
}
match() {
  local g bn matched
  read -r g bn < <(send $SOLVER_KEY "$MARKET" "matchJob(uint256,$JOB_T,address,uint8)" "$ID" "$JOB" "$PROVIDER" 0); row "solver" "matchJob" "$g"
  matched=$(ts "$bn")
  DEAL="$SOLVER,$PROVIDER,$PRICE,$FEE,$COLLATERAL,0,$matched"
  JOB="($TERMS,$DEAL,$Z32,0,$ZERO,0,2)"; check "$ID" "$JOB"
}
result() {
  local g bn
  read -r g bn < <(send $PROVIDER_KEY "$MARKET" "submitResult(uint256,$JOB_T,string,bytes32)" "$ID" "$JOB" "$CID" "$RESULT_HASH"); row "resource provider" "submitResult" "$g"
  SUBMITTED=$(ts "$bn")
  JOB="($TERMS,$DEAL,$RESULT,$SUBMITTED,$ZERO,0,3)"; check "$ID" "$JOB"
}
dispute() { # the challenger approves its deposit, then challenges
  local g bn at
  read -r g bn < <(send $ANYONE_KEY "$TOKEN" "approve(address,uint256)" "$MARKET" $((MED_FEE + BOND))); row "challenger" "approve" "$g"
  read -r g bn < <(send $ANYONE_KEY "$MARKET" "challenge(uint256,$JOB_T)" "$ID" "$JOB"); row "challenger" "challenge" "$g"
  at=$(ts "$bn")
  JOB="($TERMS,$DEAL,$RESULT,$SUBMITTED,$ANYONE,$at,4)"; check "$ID" "$JOB"
}

begin run; create; match; result; warp $((WINDOW + 1))
read -r g bn < <(send $ANYONE_KEY "$MARKET" "settle(uint256,$JOB_T,string,bytes32)" "$ID" "$JOB" "$CID" "$RESULT_HASH"); row "anyone" "settle" "$g"
finish

begin uphold; create; match; result; dispute
read -r g bn < <(send $MEDIATOR_KEY "$MARKET" "upholdChallenge(uint256,$JOB_T,string)" "$ID" "$JOB" "$CID"); row "mediator" "upholdChallenge" "$g"
finish

begin reject; create; match; result; dispute
read -r g bn < <(send $MEDIATOR_KEY "$MARKET" "rejectChallenge(uint256,$JOB_T,string,bytes32)" "$ID" "$JOB" "$CID" "$RESULT_HASH"); row "mediator" "rejectChallenge" "$g"
finish

begin expire; create; warp $((MATCH_T + 1))
read -r g bn < <(send $ANYONE_KEY "$MARKET" "expireJob(uint256,$JOB_T)" "$ID" "$JOB"); row "anyone" "expireJob" "$g"
finish

begin timeout-result; create; match; warp $((RUN_T + 1))
read -r g bn < <(send $ANYONE_KEY "$MARKET" "timeoutResult(uint256,$JOB_T)" "$ID" "$JOB"); row "anyone" "timeoutResult" "$g"
finish

begin timeout-mediation; create; match; result; dispute; warp $((MED_T + 1))
read -r g bn < <(send $ANYONE_KEY "$MARKET" "timeoutMediation(uint256,$JOB_T,string,bytes32)" "$ID" "$JOB" "$CID" "$RESULT_HASH"); row "anyone" "timeoutMediation" "$g"
finish

begin cancel; create
read -r g bn < <(send $PAYEE_KEY "$MARKET" "cancelJob(uint256,$JOB_T)" "$ID" "$JOB"); row "job creator" "cancelJob" "$g"
finish

# the creator's market balance, deposited once (not counted: set-up for all its jobs)
send $PAYEE_KEY "$TOKEN" "approve(address,uint256)" "$MARKET" 100000000000000000000 >/dev/null
send $PAYEE_KEY "$MARKET" "deposit(address,uint256)" "$PAYEE" 100000000000000000000 >/dev/null
begin run-prepaid; create; match; result; warp $((WINDOW + 1))
read -r g bn < <(send $ANYONE_KEY "$MARKET" "settle(uint256,$JOB_T,string,bytes32)" "$ID" "$JOB" "$CID" "$RESULT_HASH"); row "anyone" "settle" "$g"
finish

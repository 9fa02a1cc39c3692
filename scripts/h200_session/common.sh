# sourced first by every device call: env, a timer and a tarball of one output folder
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
step() {  # step NAME TIMEOUT CMD...: run with a timeout, log to $OUT/$CALL/NAME.log
  local name=$1 limit=$2; shift 2
  stamp "start $name"
  timeout -s INT "$limit" "$@" > "$OUT/$CALL/$name.log" 2>&1
  local rc=$?
  stamp "end $name rc=$rc"; tail -n 12 "$OUT/$CALL/$name.log"
}
pack() { (cd "$OUT" && tar czf "$CALL.tgz" "$CALL" && rm -rf "$CALL"); stamp "packed"; }

#!/usr/bin/env bash
# A Spark standalone cluster on 127.0.0.1 from the installed pyspark: one master, two workers.
#
#   scripts/cluster.sh up       start it, wait until the master counts every worker ALIVE
#   scripts/cluster.sh down     stop exactly what `up` started (and the executors under it)
#   scripts/cluster.sh status   what is running; exit 0 only when the whole cluster is up
#
# Settings (environment):
#   SPARKDL_PYTHON            Python of drivers and executors   (default: <repo>/.venv/bin/python)
#   SPARKDL_CLUSTER_DIR       pid files, logs, work dirs        (default: /tmp/sparkdl-cluster)
#   SPARKDL_MASTER_PORT       master RPC port                   (default: 7177, not Spark's 7077)
#   SPARKDL_MASTER_UI_PORT    master web UI and JSON status     (default: 8180, not Spark's 8080)
#   SPARKDL_WORKER_UI_PORT    first worker's web UI port, the next worker gets +1 (default: 0,
#                             any free port)
#   SPARKDL_WORKERS           number of workers                 (default: 2)
#   SPARKDL_WORKER_CORES      cores per worker                  (default: 1)
#   SPARKDL_WORKER_MEMORY     executor memory per worker        (default: 2g)
#   SPARKDL_WORKER_GPUS       GPUs each worker offers           (default: 0). Each worker gets a
#                             generated discovery script reporting addresses distinct across
#                             workers (worker 1: 0..N-1, worker 2: N..2N-1), as if each were its
#                             own host; the devices need not exist (Spark's own tests do this)
#   SPARKDL_CLUSTER_TIMEOUT   seconds `up` waits for the workers (default: 60)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${SPARKDL_PYTHON:-$ROOT/.venv/bin/python}
STATE=${SPARKDL_CLUSTER_DIR:-/tmp/sparkdl-cluster}
HOST=127.0.0.1
MASTER_PORT=${SPARKDL_MASTER_PORT:-7177}
MASTER_UI_PORT=${SPARKDL_MASTER_UI_PORT:-8180}
WORKER_UI_PORT=${SPARKDL_WORKER_UI_PORT:-0}
WORKERS=${SPARKDL_WORKERS:-2}
WORKER_CORES=${SPARKDL_WORKER_CORES:-1}
WORKER_MEMORY=${SPARKDL_WORKER_MEMORY:-2g}
WORKER_GPUS=${SPARKDL_WORKER_GPUS:-0}
UP_TIMEOUT=${SPARKDL_CLUSTER_TIMEOUT:-60}
STOP_TIMEOUT=15
# Every daemon JVM carries this in its command line, so leftovers are easy to find (ps, tests).
MARKER="-Dsparkdl.cluster.dir=$STATE"

die() { echo "cluster: $*" >&2; exit 1; }

daemons() {  # names of the daemons, master last so workers stop before it
  local i
  for ((i = 1; i <= WORKERS; i++)); do echo "worker-$i"; done
  echo master
}

start_time() {  # when pid $1 started (clock ticks since boot); with the pid, names one process
  sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'
}

pid_of() {  # the live pid of daemon $1 started by this script, or nothing
  local file="$STATE/$1.pid" pid started
  [ -s "$file" ] || return 0
  read -r pid started < "$file" || true
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  # The pid file holds the start time too: a pid the system has reused since is never signalled.
  if [ -n "$started" ] && [ "$(start_time "$pid")" = "$started" ]; then
    echo "$pid"
  fi
}

descendants() {  # every live process under pid $1, parents before children
  local child state
  # spark-class leaves a zombie (its launcher subshell) under each daemon: nothing to stop there.
  while read -r child state; do
    [[ $state == Z* ]] && continue
    echo "$child"
    descendants "$child"
  done < <(ps -o pid=,stat= --ppid "$1" 2>/dev/null)
}

alive_workers() {  # workers our master's JSON status reports ALIVE (0: unreachable, not ours)
  "$PYTHON" - "http://$HOST:$MASTER_UI_PORT/json/" "spark://$HOST:$MASTER_PORT" <<'EOF'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        status = json.load(r)
except Exception:
    status = {}
ours = status.get("url") == sys.argv[2]
print(sum(w.get("state") == "ALIVE" for w in status.get("workers", [])) if ours else 0)
EOF
}

port_in_use() {  # something already listens on $HOST:$1
  "$PYTHON" -c 'import socket, sys
sys.exit(socket.socket().connect_ex((sys.argv[1], int(sys.argv[2]))) != 0)' "$HOST" "$1"
}

start_daemon() {  # start daemon $1 running `spark-class $2...` in its own session, pid to a file
  local name=$1 class=$2 pidfile="$STATE/$1.pid"
  shift 2
  rm -f "$pidfile"
  # setsid: the daemon leads its own process group (pid = pgid), so `down` can signal the group.
  setsid bash -c 'echo $$ > "$0"; exec "$@"' "$pidfile" \
    "$SPARK_HOME/bin/spark-class" "$class" "$@" > "$STATE/logs/$name.log" 2>&1 < /dev/null &
  local i pid
  for ((i = 0; i < 50; i++)); do
    if [ -s "$pidfile" ]; then
      pid=$(cat "$pidfile")
      echo "$pid $(start_time "$pid")" > "$pidfile"
      return 0
    fi
    sleep 0.1
  done
  cmd_down > /dev/null
  die "$name did not start; see $STATE/logs/$name.log"
}

gpu_properties() {  # worker $1's properties file offering WORKER_GPUS addresses; its path
  local i=$1 script="$STATE/conf/gpus-worker-$1.sh" file="$STATE/conf/worker-$1.properties"
  local first=$(((i - 1) * WORKER_GPUS)) addresses="" a
  for ((a = first; a < first + WORKER_GPUS; a++)); do addresses+="${addresses:+,}\"$a\""; done
  printf '#!/usr/bin/env bash\necho '"'"'{"name": "gpu", "addresses": [%s]}'"'"'\n' \
    "$addresses" > "$script"
  chmod +x "$script"
  printf 'spark.worker.resource.gpu.amount %s\nspark.worker.resource.gpu.discoveryScript %s\n' \
    "$WORKER_GPUS" "$script" > "$file"
  echo "$file"
}

show_logs() {
  local name
  for name in $(daemons); do
    echo "--- last lines of $STATE/logs/$name.log ---" >&2
    tail -n 15 "$STATE/logs/$name.log" >&2 2>/dev/null || true
  done
}

cmd_up() {
  [ -x "$PYTHON" ] || die "no Python at $PYTHON; run 'make venv' or set SPARKDL_PYTHON"
  PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")
  SPARK_HOME=$("$PYTHON" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))') \
    || die "$PYTHON cannot import pyspark"
  if [ -n "$(pid_of master)" ]; then
    echo "cluster: already running (state in $STATE)"
    cat "$STATE/master-url"
    return 0
  fi
  cmd_down > /dev/null  # a half-started cluster from an earlier run
  local port
  for port in "$MASTER_PORT" "$MASTER_UI_PORT"; do
    if port_in_use "$port"; then
      die "port $port on $HOST is in use (another cluster? 'scripts/cluster.sh status', or set" \
        "SPARKDL_MASTER_PORT / SPARKDL_MASTER_UI_PORT)"
    fi
  done
  mkdir -p "$STATE"
  rm -rf "$STATE/logs" "$STATE/local" "$STATE/conf" "$STATE"/worker-*
  mkdir -p "$STATE/logs" "$STATE/local" "$STATE/conf"

  # The daemons, and the executors the workers launch, inherit this environment.
  export SPARK_HOME
  export SPARK_CONF_DIR="$STATE/conf"  # empty: no spark-env.sh or defaults from elsewhere
  export SPARK_LOCAL_IP=$HOST
  export SPARK_LOCAL_DIRS="$STATE/local"
  export SPARK_DAEMON_MEMORY=${SPARK_DAEMON_MEMORY:-512m}
  # maxRetries=0: a taken port fails the daemon instead of moving it to the next port unnoticed.
  export SPARK_DAEMON_JAVA_OPTS="$MARKER -Dspark.port.maxRetries=0"
  export PYSPARK_PYTHON=$PYTHON
  export PYSPARK_DRIVER_PYTHON=$PYTHON

  trap 'cmd_down > /dev/null; exit 130' INT TERM  # interrupted: leave nothing half-started
  local url="spark://$HOST:$MASTER_PORT" i ui gpus
  start_daemon master org.apache.spark.deploy.master.Master \
    --host "$HOST" --port "$MASTER_PORT" --webui-port "$MASTER_UI_PORT"
  for ((i = 1; i <= WORKERS; i++)); do
    ui=0
    [ "$WORKER_UI_PORT" = 0 ] || ui=$((WORKER_UI_PORT + i - 1))
    mkdir -p "$STATE/worker-$i"
    gpus=()
    [ "$WORKER_GPUS" = 0 ] || gpus=(--properties-file "$(gpu_properties "$i")")
    start_daemon "worker-$i" org.apache.spark.deploy.worker.Worker \
      --host "$HOST" --cores "$WORKER_CORES" --memory "$WORKER_MEMORY" --webui-port "$ui" \
      --work-dir "$STATE/worker-$i" "${gpus[@]}" "$url"
  done

  local deadline=$((SECONDS + UP_TIMEOUT)) alive=0 name
  while :; do
    alive=$(alive_workers)
    [ "$alive" -ge "$WORKERS" ] && break
    for name in $(daemons); do
      if [ -z "$(pid_of "$name")" ]; then
        show_logs
        cmd_down > /dev/null
        die "$name exited while starting (logs above, in $STATE/logs)"
      fi
    done
    if [ "$SECONDS" -ge "$deadline" ]; then
      show_logs
      cmd_down > /dev/null
      die "only $alive of $WORKERS workers ALIVE at http://$HOST:$MASTER_UI_PORT after" \
        "${UP_TIMEOUT}s (SPARKDL_CLUSTER_TIMEOUT); stopped it again, logs above"
    fi
    sleep 1
  done
  trap - INT TERM
  echo "$url" > "$STATE/master-url"
  echo "cluster: master and $WORKERS workers up (UI http://$HOST:$MASTER_UI_PORT, state in $STATE)"
  echo "$url"
}

cmd_down() {
  local file name pid pids=() groups=() p
  # Every pid file, whatever SPARKDL_WORKERS says now; workers before the master.
  for file in "$STATE"/worker-*.pid "$STATE"/master.pid; do
    [ -e "$file" ] || continue
    name=$(basename "$file" .pid)
    pid=$(pid_of "$name")
    if [ -n "$pid" ]; then
      # The whole tree (executors, their Python daemons and ranks) is taken before anything is
      # signalled: a killed parent's children would be re-parented out of reach.
      pids+=("$pid" $(descendants "$pid"))
      groups+=("$pid")
    fi
    rm -f "$STATE/$name.pid"
  done
  rm -f "$STATE/master-url"
  if [ ${#pids[@]} -eq 0 ]; then
    echo "cluster: not running (state in $STATE)"
    return 0
  fi
  for p in "${groups[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
  kill -TERM "${pids[@]}" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT)) left
  while :; do
    left=()
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && left+=("$p"); done
    [ ${#left[@]} -eq 0 ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "cluster: killing ${#left[@]} processes still running after ${STOP_TIMEOUT}s" >&2
      for p in "${groups[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
      kill -KILL "${left[@]}" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  echo "cluster: stopped ${#pids[@]} processes (logs kept in $STATE/logs)"
}

cmd_status() {
  local name pid up=0 total=0
  for name in $(daemons); do
    total=$((total + 1))
    pid=$(pid_of "$name")
    if [ -n "$pid" ]; then
      up=$((up + 1))
      echo "$name: running (pid $pid)"
    else
      echo "$name: stopped"
    fi
  done
  if [ "$up" -eq 0 ]; then
    echo "cluster: not running (state in $STATE)"
    return 3
  fi
  local alive
  alive=$(alive_workers)
  echo "master reports $alive of $WORKERS workers ALIVE; $(cat "$STATE/master-url" 2>/dev/null)"
  [ "$up" -eq "$total" ] && [ "$alive" -ge "$WORKERS" ] || return 3
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|status   (settings: see the top of $0)" >&2; exit 2 ;;
esac

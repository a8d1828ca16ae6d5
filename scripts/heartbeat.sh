#!/usr/bin/env bash
# Runs a long command and prints a line to stderr every few seconds while it runs, so a long
# step (the torch install of `make setup`) is never minutes of silence.
#   scripts/heartbeat.sh "LABEL" COMMAND [ARG ...]
# Prints "LABEL: still running (N s)" every HEARTBEAT_S seconds (default 10); exits with the
# command's status. The command runs in the foreground, so Ctrl-C reaches it as usual.
set -u
label=$1
shift
every=${HEARTBEAT_S:-10}
(
  s=0
  while sleep "$every"; do
    s=$((s + every))
    echo "$label: still running ($s s)" >&2
  done
) &
ticker=$!
trap 'kill "$ticker" 2>/dev/null' EXIT
"$@"

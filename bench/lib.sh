# Shared by the bench scripts (sourced after interop/lib/common.sh): CPU time of server processes
# from /proc, and the median of repeated measurements.

CLK_TCK=$(getconf CLK_TCK)

# cpu_ticks PID...: utime + stime of the processes (all their threads), in clock ticks (proc(5):
# fields 14 and 15 of /proc/PID/stat; the command name before them may hold spaces, so the fields
# are counted after its last ')'). A process that is gone counts 0; fails when all are gone.
cpu_ticks() {
  local total=0 seen=0 pid stat f
  for pid in "$@"; do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    read -ra f <<<"${stat##*) }"
    total=$((total + f[11] + f[12])) seen=$((seen + 1))
  done
  ((seen > 0)) && echo "$total"
}

# per_call TICKS CALLS -> CPU µs per call
per_call() { awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", (n > 0) ? t * 1e6 / hz / n : 0 }'; }

# median VALUE...: the middle value (the mean of the two middle ones for an even count).
median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

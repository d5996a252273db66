# shellcheck shell=bash
# One host-wide lock for every step that installs or builds something shared
# by all checkouts on this machine: apt-get (tests/node/install,
# tests/images/build), the Go builds (control plane, helm, promtool), the
# image builds and oha. Two test binaries start such steps at the same time
# on a fresh machine; without one lock the second apt-get lost the dpkg lock
# (issue 21). A second caller waits, then finds the work done.
#
#   source scripts/lib/host-lock.sh
#   host_lock "what I am about to do"   # blocks until the lock is ours
#
# The lock is held until host_unlock or until the calling process exits;
# call host_unlock before starting anything long-lived (a daemon inherits
# fd 8 and would hold the lock for its whole life). It is re-entrant across
# processes: a holder exports OTEL_INJECTOR_HOST_LOCK=held, so a script it
# runs (tests/node/up -> tests/images/build) does not wait for its parent.
# OTEL_INJECTOR_HOST_LOCK_WAIT bounds the wait (seconds, default 3600: a
# cold image build plus a cold Go build on 2 cores take about 20 minutes).

host_lock() {
  local why=${1:-setup}
  if [[ ${OTEL_INJECTOR_HOST_LOCK:-} == held ]]; then
    return 0
  fi
  local dir=/run/lock
  [[ -d $dir && -w $dir ]] || dir=${TMPDIR:-/tmp}
  local file=$dir/otel-injector-setup.lock
  # fd 8 stays open for the rest of the calling process (and its children,
  # which is what makes the export below true).
  exec 8>>"$file"
  if ! flock -n 8; then
    printf '[host-lock] %s: another setup step holds %s (%s); waiting\n' \
      "$why" "$file" "$(cat "$file.owner" 2>/dev/null || echo '?')" >&2
    flock -w "${OTEL_INJECTOR_HOST_LOCK_WAIT:-3600}" 8 || {
      printf '[host-lock] %s: %s still held after %ss\n' "$why" "$file" \
        "${OTEL_INJECTOR_HOST_LOCK_WAIT:-3600}" >&2
      return 1
    }
  fi
  printf 'pid %s: %s\n' "$$" "$why" >"$file.owner"
  export OTEL_INJECTOR_HOST_LOCK=held
  OTEL_INJECTOR_HOST_LOCK_OWNER=$BASHPID
}

host_unlock() {
  if [[ ${OTEL_INJECTOR_HOST_LOCK_OWNER:-} == "$BASHPID" ]]; then
    exec 8>&-
    unset OTEL_INJECTOR_HOST_LOCK OTEL_INJECTOR_HOST_LOCK_OWNER
  fi
}

# apt-get that waits for another apt/dpkg run (unattended upgrades, a user)
# instead of failing on its lock.
apt_get() {
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@"
}

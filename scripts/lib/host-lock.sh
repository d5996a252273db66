# shellcheck shell=bash
# Host-wide locks for the steps that install or build something shared by all
# checkouts on this machine: apt-get, the Go builds (control plane,
# containerd, helm, promtool), the image builds and oha. Two test binaries
# start such steps at the same time on a fresh machine; without a lock the
# second apt-get lost the dpkg lock (issue 21). A second caller waits, then
# finds the work done.
#
#   source scripts/lib/host-lock.sh
#   host_lock "what I am about to do" NAME   # blocks until lock NAME is ours
#   host_unlock NAME
#
# One lock per NAME (the thing built: control-plane, containerd, helm,
# promtool, images, webhook-image, oha; apt for apt-get, which apt_get below
# takes itself), not one for everything: on a cold machine one lock made a
# test whose images were already built wait ~9 minutes for promtool and oha
# (issue 24, the cold CI run of 2026-12-02).
#
# A lock is held until host_unlock NAME or until the calling process exits;
# call host_unlock before starting anything long-lived (a daemon inherits the
# lock's fd and would hold it for its whole life). It is re-entrant across
# processes: a holder exports OTEL_INJECTOR_HOST_LOCK_<NAME>=held, so a script
# it runs does not wait for its parent.
# OTEL_INJECTOR_HOST_LOCK_WAIT bounds the wait (seconds, default 3600: a
# cold image build plus a cold Go build on 2 cores take about 20 minutes).

_host_lock_var() { # NAME -> the variable that says it is held
  local name=${1//[^A-Za-z0-9]/_}
  printf 'OTEL_INJECTOR_HOST_LOCK_%s' "${name^^}"
}

host_lock() {
  local why=${1:-setup} name=${2:-setup}
  local var
  var=$(_host_lock_var "$name")
  if [[ ${!var:-} == held ]]; then
    return 0
  fi
  local dir=/run/lock
  [[ -d $dir && -w $dir ]] || dir=${TMPDIR:-/tmp}
  local file=$dir/otel-injector-$name.lock fd
  # The fd stays open for the rest of the calling process (and its children,
  # which is what makes the export below true).
  exec {fd}>>"$file"
  if ! flock -n "$fd"; then
    printf '[host-lock] %s: another step holds %s (%s); waiting\n' \
      "$why" "$file" "$(cat "$file.owner" 2>/dev/null || echo '?')" >&2
    flock -w "${OTEL_INJECTOR_HOST_LOCK_WAIT:-3600}" "$fd" || {
      printf '[host-lock] %s: %s still held after %ss\n' "$why" "$file" \
        "${OTEL_INJECTOR_HOST_LOCK_WAIT:-3600}" >&2
      return 1
    }
  fi
  printf 'pid %s: %s\n' "$$" "$why" >"$file.owner"
  export "$var=held"
  printf -v "${var}_FD" %s "$fd"
  printf -v "${var}_OWNER" %s "$BASHPID"
}

host_unlock() {
  local var owner fdvar n
  var=$(_host_lock_var "${1:-setup}")
  owner=${var}_OWNER fdvar=${var}_FD
  if [[ ${!owner:-} == "$BASHPID" ]]; then
    n=${!fdvar}
    exec {n}>&-
    unset "$var" "$owner" "$fdvar"
  fi
}

# apt-get under the apt lock (two of our steps never run it side by side),
# waiting for another apt/dpkg run (unattended upgrades, a user) instead of
# failing on its lock.
apt_get() {
  local var took=0 rc=0
  var=$(_host_lock_var apt)
  if [[ ${!var:-} != held ]]; then
    host_lock "apt-get $1" apt || return 1
    took=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@" || rc=$?
  ((took)) && host_unlock apt
  return "$rc"
}
